import test from "ava";
import { F2bzError } from "../../src/errors.js";
import { type BanExecutor, timedExecutor } from "../../src/fail2ban/executor.js";

test("each call's time is recorded in seconds, a failed call's too, and the result is passed through", async (t) => {
  let clock = 1_000;
  const calls: string[] = [];
  const inner: BanExecutor = {
    async ban(jail, ips) {
      calls.push(`ban ${jail} ${ips.join(",")}`);
      clock += 250;
      return ips.length;
    },
    async unban(jail) {
      calls.push(`unban ${jail}`);
      clock += 1_500;
      throw new F2bzError("FAIL2BAN_FAILED", "fail2ban-client exited with 255");
    },
  };
  const seconds: number[] = [];
  const executor = timedExecutor(
    inner,
    (s) => seconds.push(s),
    () => clock,
  );
  t.is(await executor.ban("sshd", ["192.0.2.1", "192.0.2.2"]), 2);
  await t.throwsAsync(executor.unban("sshd", ["192.0.2.1"]), { instanceOf: F2bzError });
  t.deepEqual(calls, ["ban sshd 192.0.2.1,192.0.2.2", "unban sshd"]);
  t.deepEqual(seconds, [0.25, 1.5]);
});
