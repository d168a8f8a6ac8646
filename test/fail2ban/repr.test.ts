import test from "ava";
import { parsePythonStringList } from "../../src/fail2ban/repr.js";

test("reads the lists fail2ban-client prints (captured from fail2ban 1.0.2)", (t) => {
  t.deepEqual(parsePythonStringList("[]\n"), []);
  t.deepEqual(parsePythonStringList("['1.2.3.4', '5.6.7.8']\n"), ["1.2.3.4", "5.6.7.8"]);
  // `set j1 banip "it's" 'a"b' 'c\d' é` then `get j1 banned`:
  t.deepEqual(parsePythonStringList(`["it's", 'a"b', 'c\\\\d', 'é']`), ["it's", 'a"b', "c\\d", "é"]);
  t.deepEqual(parsePythonStringList(String.raw`['\x00\t\u00e9\U0001f600', '']`), ["\0\t\u00e9\u{1f600}", ""]);
});

test("anything but a flat list of strings is refused, not guessed", (t) => {
  for (const text of [
    "",
    "[",
    "['a'",
    "['a',]",
    "[1, 0]",
    "['a' 'b']",
    "[['a']]",
    "['a\\q']",
    "['\\x4']",
    "1",
  ]) {
    t.is(parsePythonStringList(text), undefined, text);
  }
});
