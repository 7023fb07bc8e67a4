/**
 * Small SVG building blocks for the project's figures (confusion.png, curves.png, attention
 * maps). A figure is an SVG string rendered to PNG by sharp (librsvg), so no plotting library
 * is needed; text uses the system's sans-serif font (DejaVu Sans where installed).
 */
import sharp from "sharp";
import { writeFileAtomic } from "../io/atomic.js";
import { type ColorMap, rgbHex } from "./colormap.js";

export const FONT_FAMILY = "DejaVu Sans, Arial, Helvetica, sans-serif";

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Round to 2 decimals: keeps the SVG small without visible loss. */
export function num(x: number): string {
  return String(Math.round(x * 100) / 100);
}

/**
 * Width of `s` in pixels at `fontSize`, as an upper-ish estimate (DejaVu Sans averages
 * ~0.6 em per character), used to size margins so labels are never clipped.
 */
export function textWidth(s: string, fontSize: number): number {
  return s.length * fontSize * 0.62;
}

/** `s` cut to at most `maxChars`, with an ellipsis when cut. */
export function truncate(s: string, maxChars: number): string {
  return s.length <= maxChars ? s : `${s.slice(0, Math.max(1, maxChars - 1))}…`;
}

export interface TextOptions {
  size?: number;
  anchor?: "start" | "middle" | "end";
  /** Degrees, clockwise, around (x, y). */
  rotate?: number;
  weight?: "normal" | "bold";
  fill?: string;
  /** Vertical alignment of (x, y) relative to the text. */
  baseline?: "auto" | "middle" | "hanging";
}

export function text(x: number, y: number, s: string, o: TextOptions = {}): string {
  const attrs = [
    `x="${num(x)}"`,
    `y="${num(y)}"`,
    `font-size="${o.size ?? 12}"`,
    o.anchor && o.anchor !== "start" ? `text-anchor="${o.anchor}"` : "",
    o.weight === "bold" ? 'font-weight="bold"' : "",
    o.fill ? `fill="${o.fill}"` : "",
    o.baseline && o.baseline !== "auto"
      ? `dominant-baseline="${o.baseline === "middle" ? "central" : "hanging"}"`
      : "",
    o.rotate ? `transform="rotate(${num(o.rotate)} ${num(x)} ${num(y)})"` : "",
  ].filter(Boolean);
  return `<text ${attrs.join(" ")}>${escapeXml(s)}</text>`;
}

export function rect(x: number, y: number, w: number, h: number, fill: string, extra = ""): string {
  return `<rect x="${num(x)}" y="${num(y)}" width="${num(w)}" height="${num(h)}" fill="${fill}"${extra ? ` ${extra}` : ""}/>`;
}

/** A whole SVG document on a white background. */
export function svgDocument(width: number, height: number, body: string[]): string {
  const w = Math.ceil(width);
  const h = Math.ceil(height);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="${FONT_FAMILY}">`,
    `<rect width="${w}" height="${h}" fill="#ffffff"/>`,
    ...body,
    "</svg>",
  ].join("\n");
}

/** A PNG embedded in the SVG (raster panels such as images and attention overlays). */
export function pngImage(x: number, y: number, w: number, h: number, png: Uint8Array): string {
  const href = `data:image/png;base64,${Buffer.from(png).toString("base64")}`;
  return `<image x="${num(x)}" y="${num(y)}" width="${num(w)}" height="${num(h)}" href="${href}"/>`;
}

export interface ColorBarOptions {
  x: number;
  y: number;
  width: number;
  height: number;
  cmap: ColorMap;
  min: number;
  max: number;
  label?: string;
  ticks?: number;
  format?: (v: number) => string;
  fontSize?: number;
}

/** A vertical colour bar, max at the top, with tick labels on its right. */
export function colorBar(o: ColorBarOptions): string[] {
  const id = `cbar${Math.round(o.x)}_${Math.round(o.y)}`;
  const stops = Array.from({ length: 11 }, (_, i) => {
    const t = i / 10;
    return `<stop offset="${t}" stop-color="${rgbHex(o.cmap(1 - t))}"/>`;
  });
  const size = o.fontSize ?? 11;
  const fmt = o.format ?? ((v: number) => String(Math.round(v * 100) / 100));
  const ticks = o.ticks ?? 5;
  const out = [
    `<defs><linearGradient id="${id}" x1="0" y1="0" x2="0" y2="1">${stops.join("")}</linearGradient></defs>`,
    rect(o.x, o.y, o.width, o.height, `url(#${id})`, 'stroke="#444444" stroke-width="0.5"'),
  ];
  for (let i = 0; i <= ticks; i++) {
    const v = o.min + ((o.max - o.min) * i) / ticks;
    const ty = o.y + o.height - (o.height * i) / ticks;
    out.push(
      `<line x1="${num(o.x + o.width)}" y1="${num(ty)}" x2="${num(o.x + o.width + 4)}" y2="${num(ty)}" stroke="#444444"/>`,
    );
    out.push(text(o.x + o.width + 6, ty, fmt(v), { size, baseline: "middle" }));
  }
  if (o.label) {
    const lx = o.x + o.width + 10 + textWidth(fmt(o.max), size) + size;
    out.push(text(lx, o.y + o.height / 2, o.label, { size, anchor: "middle", rotate: 90 }));
  }
  return out;
}

export async function svgToPng(svg: string): Promise<Buffer> {
  // librsvg refuses very large SVGs by default; our figures embed base64 panels.
  return sharp(Buffer.from(svg), { unlimited: true }).png().toBuffer();
}

/** Render `svg` and write it to `path` atomically (a reader never sees half a PNG). */
export async function renderSvgToPng(svg: string, path: string): Promise<void> {
  writeFileAtomic(path, await svgToPng(svg));
}
