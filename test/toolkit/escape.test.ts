import test from "ava";
import { escapeText, quoteText } from "../../src/toolkit/escape.js";

test("control characters, quotes and backslashes come out as visible escapes on one line", (t) => {
  const forged = 'x\n{"level":50,"msg":"forged"}\r\u001b[2J\\';
  const escaped = escapeText(forged, 200);
  t.is(escaped, 'x\\n{\\"level\\":50,\\"msg\\":\\"forged\\"}\\r\\u001b[2J\\\\');
  t.false(
    [...escaped].some((c) => c.charCodeAt(0) < 0x20),
    escaped,
  );
});

test("long text is cut at max characters and marked", (t) => {
  t.is(escapeText("a".repeat(10), 4), "aaaa…");
  t.is(escapeText("abcd", 4), "abcd");
});

test("quoted text escapes the single quote that would end it", (t) => {
  t.is(quoteText("it's\n", 20), "'it\\'s\\n'");
  t.is(quoteText("abcdef", 3), "'abc…'");
});

test("a reply read as latin1 gets an ASCII cut mark", (t) => {
  t.is(quoteText("a\u0007bcdef", 3, "..."), "'a\\u0007b...'");
});
