import sodiumModule from "libsodium-wrappers";

/** libsodium, initialised once. Every caller awaits `sodium()` before using it. */
let ready: Promise<typeof sodiumModule> | undefined;

export function sodium(): Promise<typeof sodiumModule> {
  ready ??= sodiumModule.ready.then(() => sodiumModule);
  return ready;
}
