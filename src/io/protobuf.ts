/**
 * The slice of the protobuf wire format (https://protobuf.dev/programming-guides/encoding/) that
 * writing an ONNX model needs: varints, 32-bit floats, and length-delimited strings, bytes and
 * nested messages. Nothing is read back; onnxruntime is the reader.
 *
 * A message is kept as a list of chunks: nesting a message or adding a large tensor's bytes
 * links the chunks instead of copying them, so a 300 MB model is copied once, in `finish()`.
 */

const VARINT = 0;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

export class ProtoWriter {
  private readonly chunks: Uint8Array[] = [];
  /** Small writes (tags, varints) collect here until a large chunk is linked after them. */
  private pending: number[] = [];
  private linkedBytes = 0;

  /** Encoded size in bytes. */
  get length(): number {
    return this.linkedBytes + this.pending.length;
  }

  /**
   * An int32/int64/uint64/enum/bool field. Negative values are written as 64-bit two's complement
   * (ten bytes), which is how protobuf encodes a negative int64 such as an axis of -1.
   */
  int(field: number, value: number | bigint): this {
    this.tag(field, VARINT);
    this.varint(value);
    return this;
  }

  /** A repeated int64 field, unpacked (one tag per value): the proto2 default of onnx.proto. */
  ints(field: number, values: Iterable<number | bigint>): this {
    for (const v of values) this.int(field, v);
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, FIXED32);
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    this.pending.push(...bytes);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  /** Links `data` without copying it: it must not change before `finish()`. */
  bytes(field: number, data: Uint8Array): this {
    this.tag(field, LENGTH_DELIMITED);
    this.varint(data.byteLength);
    this.link([data], data.byteLength);
    return this;
  }

  /** Nests `message`, taking over its chunks (do not write to it afterwards). */
  message(field: number, message: ProtoWriter): this {
    message.flush();
    this.tag(field, LENGTH_DELIMITED);
    this.varint(message.linkedBytes);
    this.link(message.chunks, message.linkedBytes);
    return this;
  }

  /** The encoded message as one buffer. */
  finish(): Uint8Array {
    this.flush();
    const out = new Uint8Array(this.linkedBytes);
    let offset = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, offset);
      offset += chunk.byteLength;
    }
    return out;
  }

  private tag(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  private varint(value: number | bigint): void {
    if (typeof value === "number") {
      if (!Number.isSafeInteger(value))
        throw new RangeError(`protobuf varint: ${value} is not a safe integer`);
      if (value >= 0) {
        // Division instead of >>> keeps values above 2^31 exact.
        while (value >= 0x80) {
          this.pending.push((value % 0x80) | 0x80);
          value = Math.floor(value / 0x80);
        }
        this.pending.push(value);
        return;
      }
    }
    let v = BigInt.asUintN(64, BigInt(value));
    while (v >= 0x80n) {
      this.pending.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.pending.push(Number(v));
  }

  private link(chunks: Uint8Array[], byteLength: number): void {
    this.flush();
    // A loop, not push(...chunks): a large graph has more chunks than a call may take arguments.
    for (const chunk of chunks) this.chunks.push(chunk);
    this.linkedBytes += byteLength;
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    this.chunks.push(Uint8Array.from(this.pending));
    this.linkedBytes += this.pending.length;
    this.pending = [];
  }
}
