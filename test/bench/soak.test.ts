import test from "ava";
import { soak } from "../../bench/soak.js";
import { ensureBuilt } from "../helpers/cli.js";

test("soak, short: publisher, monitor and subscriber under mixed load keep RSS and descriptors flat", async (t) => {
  t.timeout(120_000);
  ensureBuilt();
  const verdict = await soak({ seconds: 40, maxRssGrowth: 0.25, maxFdGrowth: 4, warmUp: 0.5 });
  for (const line of verdict.lines) t.log(line);
  t.true(verdict.ok, verdict.lines.join("\n"));
});
