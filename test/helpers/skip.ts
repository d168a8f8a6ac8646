import os from "node:os";
import type { TestFn } from "ava";
import { isRoot } from "../harness/users.js";

/**
 * `test` when the machine has what the tests need, else `test.skip` and one line on stderr that
 * names what is missing and how to get it. Absence is the only reason to skip, and it shows as a
 * skip in ava's summary: never as a test that passes without having run.
 */
export function testWhen<Context>(
  test: TestFn<Context>,
  available: boolean,
  missing: string,
): TestFn<Context> {
  if (available) return test;
  process.stderr.write(`skipping: ${missing}\n`);
  return test.skip as unknown as TestFn<Context>;
}

/** `test` as root, else a visible skip naming `what` the tests would have checked. */
export const asRoot = <Context>(test: TestFn<Context>, what: string): TestFn<Context> =>
  testWhen(test, isRoot(), `not root: ${what}`);

/**
 * Whether this machine has IPv6 loopback (::1), which a container may lack. Synchronous, because
 * ava takes tests only as declared when the file is loaded.
 */
export function hasIpv6Loopback(): boolean {
  return Object.values(os.networkInterfaces()).some((addresses) =>
    addresses?.some((a) => a.family === "IPv6" && a.address === "::1"),
  );
}
