/**
 * `vit serve`'s page in a real headless browser (Debian's chromium through playwright-core): an
 * image picked and one dropped, and each time the top class and the attention overlay appear.
 * `.ci/run` installs chromium; where there is none the test says so and skips.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import type { BrowserContext, Page } from "playwright-core";
import { chromiumMissing, launchChromium } from "../scripts/chromium.js";
import { writePng } from "./data_fixtures.js";
import { type Running, startServer, writeTinyRun } from "./serve_fixtures.js";

const CLASSES = ["tabby cat", "golden retriever", "goldfinch"];
const missing = chromiumMissing();
const skip = missing ? `${missing} to run the page test` : false;

describe("vit serve: the page in headless chromium", { skip }, () => {
  let dir: string;
  let server: Running;
  let browser: BrowserContext;
  let page: Page;
  let image: string;

  before(async () => {
    await tf.setBackend("cpu");
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "vit-serve-page-"));
    server = await startServer(writeTinyRun(dir, CLASSES));
    image = path.join(dir, "photo.png");
    await writePng(image, 64, 48, 7);
    browser = await launchChromium(path.join(dir, "profile"));
    page = await browser.newPage();
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  after(async () => {
    await browser?.close();
    await server?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The top class the API gives for the image, to compare with what the page shows. */
  async function apiTop(): Promise<string> {
    const r = await fetch(`${server.url}/predict`, {
      method: "POST",
      headers: { "content-type": "image/png" },
      body: fs.readFileSync(image),
    });
    return ((await r.json()) as { predictions: { label: string }[] }[])[0].predictions[0].label;
  }

  // Code run in the page is passed as text: this project type-checks for Node, not the DOM.
  async function shownResult(): Promise<{ top: string; bars: number; overlayWidth: number }> {
    await page.waitForFunction(`document.getElementById("overlay")?.naturalWidth > 0`);
    return {
      top: (await page.textContent("#results li .label")) ?? "",
      bars: await page.locator("#results .fill").count(),
      overlayWidth: (await page.evaluate(`document.getElementById("overlay").naturalWidth`)) as number,
    };
  }

  test("an image picked with the file chooser: top class and overlay appear", async () => {
    await page.goto(`${server.url}/`);
    await page.waitForFunction(`document.getElementById("model").textContent.includes("3 classes")`);
    await page.setInputFiles("#file", image);
    const shown = await shownResult();
    assert.equal(shown.top, await apiTop());
    assert.equal(shown.bars, 3);
    assert.equal(shown.overlayWidth, 448);
  });

  test("an image dropped on the page: top class and overlay appear", async () => {
    await page.goto(`${server.url}/`);
    const b64 = fs.readFileSync(image).toString("base64");
    const dataTransfer = await page.evaluateHandle(`(() => {
      const dt = new DataTransfer();
      const bytes = Uint8Array.from(atob("${b64}"), (c) => c.charCodeAt(0));
      dt.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
      return dt;
    })()`);
    await page.dispatchEvent("#drop", "drop", { dataTransfer });
    const shown = await shownResult();
    assert.equal(shown.top, await apiTop());
    assert.match((await page.textContent("#status")) ?? "", /^dropped\.png: /);
  });

  test("a file that is not an image: the server's reason is shown", async () => {
    await page.goto(`${server.url}/`);
    const bad = path.join(dir, "notes.png");
    fs.writeFileSync(bad, "not an image");
    await page.setInputFiles("#file", bad);
    await page.waitForFunction(`document.getElementById("status").className === "error"`);
    assert.match((await page.textContent("#status")) ?? "", /^body: /);
  });

  test("nothing runs off the side at phone width", async () => {
    await page.setViewportSize({ width: 375, height: 740 });
    await page.goto(`${server.url}/`);
    await page.setInputFiles("#file", image);
    await shownResult();
    const fits = await page.evaluate(`document.documentElement.scrollWidth <= window.innerWidth`);
    assert.ok(fits, "the page is wider than the window");
  });
});
