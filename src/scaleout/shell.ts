/** POSIX shell quoting, so a printed command runs as is when pasted (paths with spaces, quotes, `$`). */

/** Words made only of these characters need no quotes in sh, bash or zsh. */
const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** One word as the shell should see it: single quotes, with each `'` written as `'\''`. */
export function shellQuote(word: string): string {
  if (SAFE.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** argv as one shell line. */
export function shellLine(argv: readonly string[]): string {
  return argv.map(shellQuote).join(" ");
}
