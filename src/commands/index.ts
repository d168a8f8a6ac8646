import { checkConfig } from "./check-config.js";
import type { Command } from "./command.js";
import { keygen } from "./keygen.js";
import { keys } from "./keys.js";

export const commands: readonly Command[] = [keygen, keys, checkConfig];
