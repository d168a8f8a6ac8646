import { banHelper } from "./ban-helper.js";
import { checkConfig } from "./check-config.js";
import type { Command } from "./command.js";
import { demo } from "./demo.js";
import { keygen } from "./keygen.js";
import { keys } from "./keys.js";
import { monitor } from "./monitor.js";
import { publisher } from "./publisher.js";
import { status } from "./status.js";
import { subscriber } from "./subscriber.js";

/** Every command, in the order `f2bz --help` lists them. */
export const commands: readonly Command[] = [
  demo,
  keygen,
  keys,
  monitor,
  publisher,
  subscriber,
  banHelper,
  status,
  checkConfig,
];
