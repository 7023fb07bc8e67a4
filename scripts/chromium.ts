/**
 * Debian's chromium driven by playwright-core, as the page test and the docs screenshot launch it:
 * headless, no network of its own, a fresh profile in `profileDir`.
 */
import * as fs from "node:fs";
import { type BrowserContext, chromium } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";

/** Why the browser cannot run here, or null when it can. */
export function chromiumMissing(): string | null {
  return fs.existsSync(CHROMIUM)
    ? null
    : `no browser at ${CHROMIUM}: install Debian's chromium (apt-get install -y chromium)`;
}

export function launchChromium(profileDir: string): Promise<BrowserContext> {
  // launchPersistentContext owns --user-data-dir: a new folder is a fresh profile.
  return chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
