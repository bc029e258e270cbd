/**
 * pve-cbt's read-only NBD server: exports one disk of a backup, straight from the repository.
 *
 * Fixed newstyle only; NBD_OPT_EXPORT_NAME, INFO, GO, LIST, STRUCTURED_REPLY, LIST/SET_META_CONTEXT
 * with `base:allocation` (zero chunks are NBD_STATE_HOLE|NBD_STATE_ZERO). Transmission: READ (holes
 * as OFFSET_HOLE chunks with structured replies), BLOCK_STATUS, FLUSH/CACHE (no-ops), DISC; writes,
 * trims and write-zeroes fail with EPERM. The export is read-only and CAN_MULTI_CONN: connections
 * share one reader and one cache of decoded chunks with read-ahead (chunk-cache.ts). A reply goes
 * out as one corked write: header and data in one writev, the data straight from the decoded chunk.
 * Wire encoding is in server-codec.ts.
 */
import net from 'node:net';
import {
  BASE_ALLOCATION,
  DEFAULT_MAX_BLOCK_SIZE,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_READ,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_OPT_ABORT,
  NBD_OPT_GO,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  REQUEST_SIZE,
} from './nbd-constants';
import { ChunkCache, DEFAULT_CACHE_OPTIONS, type ChunkCacheOptions } from './chunk-cache';
import * as c from './server-codec';

/** What the server needs from a backup disk (ServeDiskSource and BackupDiskReader implement it). */
export interface ExportSource {
  readonly size: number;
  readonly geometry: { chunkSize: number };
  isZeroChunk(i: number): boolean;
  readChunk(i: number): Promise<Buffer>;
  /** Adjacent non-zero chunks read together (daemon/repository/serve-source.ts); see chunk-cache.ts. */
  readRun?(first: number, count: number): Promise<Buffer>[];
}

export const SERVER_MIN_BLOCK = 1;
export const SERVER_PREFERRED_BLOCK = 4096;
export const SERVER_MAX_BLOCK = DEFAULT_MAX_BLOCK_SIZE;
const MAX_OPTION_DATA = 64 * 1024;
const META_ID = 1;
export const TRANSMISSION_FLAGS = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_CAN_MULTI_CONN;

/** Reads exact byte counts from a socket, without timeouts (an NBD client may sit idle for hours). */
class SocketReader {
  private bufs: Buffer[] = [];
  private have = 0;
  private waiter: { n: number; resolve: (b: Buffer | null) => void } | null = null;
  private ended = false;
  constructor(socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.bufs.push(d);
      this.have += d.length;
      if (this.have > 64 * 1024 * 1024) socket.pause();
      this.settle(socket);
    });
    const end = (): void => {
      this.ended = true;
      this.settle(socket);
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }
  read(n: number, socket: net.Socket): Promise<Buffer | null> {
    return new Promise((resolve) => {
      this.waiter = { n, resolve };
      this.settle(socket);
    });
  }
  private settle(socket: net.Socket): void {
    const w = this.waiter;
    if (!w) return;
    if (this.have >= w.n) {
      const all = Buffer.concat(this.bufs);
      this.bufs = [all.subarray(w.n)];
      this.have -= w.n;
      this.waiter = null;
      if (this.have < 16 * 1024 * 1024) socket.resume();
      w.resolve(all.subarray(0, w.n));
    } else if (this.ended) {
      this.waiter = null;
      w.resolve(null);
    }
  }
}

export interface NbdServerOptions {
  exportName: string;
  source: ExportSource;
  onError?: (err: unknown) => void;
  /** The chunk cache's size and read-ahead (chunk-cache.ts). */
  cache?: ChunkCacheOptions;
}

export class NbdExportServer {
  readonly server: net.Server;
  readonly cache: ChunkCache;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly opts: NbdServerOptions) {
    this.cache = new ChunkCache(opts.source, opts.cache ?? DEFAULT_CACHE_OPTIONS);
    this.server = net.createServer((s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      this.serve(s).catch((err) => {
        opts.onError?.(err);
        s.destroy();
      });
    });
  }

  listen(where: { path: string } | { host: string; port: number }): Promise<net.AddressInfo | string> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(where, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as net.AddressInfo | string);
      });
    });
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async serve(s: net.Socket): Promise<void> {
    const r = new SocketReader(s);
    s.setNoDelay(true);
    s.write(c.encodeServerGreeting(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES));
    const cf = await r.read(4, s);
    if (!cf) return;
    const noZeroes = (cf.readUInt32BE(0) & NBD_FLAG_C_NO_ZEROES) !== 0;
    const state = { structured: false, meta: false };
    const size = this.opts.source.size;
    const name = this.opts.exportName;
    const known = (n: string): boolean => n === '' || n === name;
    for (;;) {
      const hb = await r.read(c.OPTION_HEADER_SIZE, s);
      if (!hb) return;
      const h = c.decodeOptionHeader(hb);
      if (typeof h === 'string') return void s.destroy();
      if (h.length > MAX_OPTION_DATA) return void s.destroy();
      const data = await r.read(h.length, s);
      if (!data) return;
      const reply = (type: number, payload?: Buffer): boolean => s.write(c.encodeOptionReply(h.option, type, payload));
      const error = (type: number, msg: string): boolean => reply(type, Buffer.from(msg, 'utf8'));
      switch (h.option) {
        case c.NBD_OPT_EXPORT_NAME: {
          if (!known(data.toString('utf8'))) return void s.destroy();
          s.write(c.encodeExportNameReply(size, TRANSMISSION_FLAGS, noZeroes));
          return this.transmit(s, r, state);
        }
        case NBD_OPT_ABORT:
          reply(NBD_REP_ACK);
          return void s.end();
        case c.NBD_OPT_LIST:
          if (h.length) error(c.NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
          else {
            reply(NBD_REP_SERVER, c.encodeServerListEntry(name));
            reply(NBD_REP_ACK);
          }
          break;
        case c.NBD_OPT_INFO:
        case NBD_OPT_GO: {
          const go = c.decodeGoData(data);
          if (typeof go === 'string') error(c.NBD_REP_ERR_INVALID, go);
          else if (!known(go.name)) error(c.NBD_REP_ERR_UNKNOWN, `no export named '${go.name}' (this server exports '${name}')`);
          else {
            reply(NBD_REP_INFO, c.encodeInfoExport(size, TRANSMISSION_FLAGS));
            if (go.infos.includes(c.NBD_INFO_NAME)) reply(NBD_REP_INFO, c.encodeInfoName(name));
            reply(NBD_REP_INFO, c.encodeInfoBlockSize(SERVER_MIN_BLOCK, SERVER_PREFERRED_BLOCK, SERVER_MAX_BLOCK));
            reply(NBD_REP_ACK);
            if (h.option === NBD_OPT_GO) return this.transmit(s, r, state);
          }
          break;
        }
        case NBD_OPT_STRUCTURED_REPLY:
          if (h.length) error(c.NBD_REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
          else {
            state.structured = true;
            reply(NBD_REP_ACK);
          }
          break;
        case NBD_OPT_LIST_META_CONTEXT:
        case NBD_OPT_SET_META_CONTEXT: {
          const set = h.option === NBD_OPT_SET_META_CONTEXT;
          const q = c.decodeMetaContextData(data);
          if (typeof q === 'string') error(c.NBD_REP_ERR_INVALID, q);
          else if (set && !state.structured) error(c.NBD_REP_ERR_INVALID, 'structured replies must be negotiated first');
          else if (!known(q.name)) error(c.NBD_REP_ERR_UNKNOWN, `no export named '${q.name}'`);
          else {
            const matched = c.matchMetaContexts(q.queries, [BASE_ALLOCATION], !set);
            if (set) state.meta = matched.includes(BASE_ALLOCATION);
            for (const m of matched) reply(NBD_REP_META_CONTEXT, c.encodeMetaContextReply(set ? META_ID : 0, m));
            reply(NBD_REP_ACK);
          }
          break;
        }
        case c.NBD_OPT_STARTTLS:
          error(c.NBD_REP_ERR_POLICY, 'TLS is not offered: serve on a unix socket or loopback');
          break;
        default:
          error(c.NBD_REP_ERR_UNSUP, `option ${h.option} is not supported`);
      }
    }
  }

  private async transmit(s: net.Socket, r: SocketReader, state: { structured: boolean; meta: boolean }): Promise<void> {
    const size = this.opts.source.size;
    for (;;) {
      const rb = await r.read(REQUEST_SIZE, s);
      if (!rb) return;
      const req = c.decodeRequest(rb);
      if (typeof req === 'string') return void s.destroy();
      if (req.type === c.NBD_CMD_WRITE) {
        if (!(await r.read(req.length, s))) return;
      }
      if (req.type === NBD_CMD_DISC) return void s.end();
      const fail = (errno: number, msg: string): void => {
        if (state.structured) {
          const p = c.encodeErrorPayload(errno, msg);
          s.write(Buffer.concat([c.encodeChunkHeader(req.cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, p.length), p]));
        } else s.write(c.encodeSimpleReply(req.cookie, errno));
      };
      const inRange = req.offset + req.length <= size;
      switch (req.type) {
        case NBD_CMD_READ:
          if (!inRange) fail(c.NBD_EINVAL, 'read beyond the end of the export');
          else if (req.length > SERVER_MAX_BLOCK) fail(c.NBD_EINVAL, 'read larger than the maximum block size');
          else this.read(s, req, state.structured).catch((err) => fail(c.NBD_EIO, String((err as Error).message ?? err).slice(0, 200)));
          break;
        case NBD_CMD_BLOCK_STATUS:
          if (!state.meta) fail(c.NBD_EINVAL, 'no metadata context was negotiated');
          else if (!inRange || req.length === 0) fail(c.NBD_EINVAL, 'block status range outside the export');
          else this.blockStatus(s, req);
          break;
        case c.NBD_CMD_FLUSH:
        case c.NBD_CMD_CACHE:
          if (state.structured) s.write(c.encodeChunkHeader(req.cookie, NBD_REPLY_FLAG_DONE, 0, 0));
          else s.write(c.encodeSimpleReply(req.cookie, 0));
          break;
        case c.NBD_CMD_WRITE:
        case c.NBD_CMD_TRIM:
        case c.NBD_CMD_WRITE_ZEROES:
          fail(c.NBD_EPERM, 'the export is read-only');
          break;
        default:
          fail(c.NBD_EINVAL, `command ${req.type} is not supported`);
      }
    }
  }

  private async read(s: net.Socket, req: c.Request, structured: boolean): Promise<void> {
    const src = this.opts.source;
    const pieces = c.splitRange(req.offset, req.length, src.geometry.chunkSize, (i) => src.isZeroChunk(i));
    // The request's chunks asked for together: the cache reads the missing ones as runs.
    const asked = this.cache.getMany(pieces.filter((p) => !p.zero).map((p) => p.chunk));
    let k = 0;
    const datas = await Promise.all(pieces.map(async (p) => (p.zero ? null : (await asked[k++]).subarray(p.within, p.within + p.length))));
    s.cork();
    try {
      this.writeRead(s, req, structured, pieces, datas);
    } finally {
      s.uncork();
    }
  }

  private writeRead(s: net.Socket, req: c.Request, structured: boolean, pieces: c.Piece[], datas: (Buffer | null)[]): void {
    if (!structured) {
      s.write(c.encodeSimpleReply(req.cookie, 0));
      pieces.forEach((p, i) => s.write(datas[i] ?? Buffer.alloc(p.length)));
      return;
    }
    if (pieces.length === 0) {
      s.write(c.encodeChunkHeader(req.cookie, NBD_REPLY_FLAG_DONE, 0, 0));
      return;
    }
    // Neighbouring data pieces go out as one OFFSET_DATA chunk (one header, then their bytes).
    for (let i = 0; i < pieces.length; ) {
      const p = pieces[i];
      let j = i + 1;
      if (datas[i]) while (j < pieces.length && datas[j]) j++;
      const flags = j === pieces.length ? NBD_REPLY_FLAG_DONE : 0;
      if (datas[i]) {
        let n = 0;
        for (let m = i; m < j; m++) n += (datas[m] as Buffer).length;
        s.write(Buffer.concat([c.encodeChunkHeader(req.cookie, flags, NBD_REPLY_TYPE_OFFSET_DATA, 8 + n), c.encodeOffset(p.offset)]));
        for (let m = i; m < j; m++) s.write(datas[m] as Buffer);
      } else {
        s.write(Buffer.concat([c.encodeChunkHeader(req.cookie, flags, NBD_REPLY_TYPE_OFFSET_HOLE, 12), c.encodeHole(p.offset, p.length)]));
      }
      i = j;
    }
  }

  private blockStatus(s: net.Socket, req: c.Request): void {
    const src = this.opts.source;
    const pieces = c.splitRange(req.offset, req.length, src.geometry.chunkSize, (i) => src.isZeroChunk(i));
    const extents: { length: number; flags: number }[] = [];
    for (const p of pieces) {
      const flags = p.zero ? NBD_STATE_HOLE | NBD_STATE_ZERO : 0;
      const last = extents[extents.length - 1];
      if (last && last.flags === flags) last.length += p.length;
      else extents.push({ length: p.length, flags });
    }
    const list = (req.flags & NBD_CMD_FLAG_REQ_ONE) !== 0 ? extents.slice(0, 1) : extents;
    const p = c.encodeBlockStatus(META_ID, list);
    s.write(Buffer.concat([c.encodeChunkHeader(req.cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, p.length), p]));
  }
}
