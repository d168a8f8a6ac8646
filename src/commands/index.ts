import { banHelper } from "./ban-helper.js";
import { checkConfig } from "./check-config.js";
import type { Command } from "./command.js";
import { keygen } from "./keygen.js";
import { keys } from "./keys.js";
import { monitor } from "./monitor.js";
import { publisher } from "./publisher.js";
import { subscriber } from "./subscriber.js";

export const commands: readonly Command[] = [
  keygen,
  keys,
  monitor,
  publisher,
  subscriber,
  banHelper,
  checkConfig,
];
