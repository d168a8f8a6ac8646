import test from "ava";
import { isValidJail } from "../../src/policy/jail.js";

for (const name of ["sshd", "nginx-http-auth", "f2bz", "postfix.sasl", "a", "A_1", "x".repeat(32)]) {
  test(`jail ${JSON.stringify(name)} is valid`, (t) => {
    t.true(isValidJail(name));
  });
}

for (const name of [
  "",
  "-x",
  ".hidden",
  "_x",
  "a b",
  "x;rm",
  "a/b",
  "sshd\n",
  "ä",
  "x".repeat(33),
  "$(id)",
]) {
  test(`jail ${JSON.stringify(name)} is rejected`, (t) => {
    t.false(isValidJail(name));
  });
}

test("a non-string jail is rejected without throwing", (t) => {
  t.false(isValidJail(undefined as unknown as string));
  t.false(isValidJail({ toString: () => "sshd" } as unknown as string));
});
