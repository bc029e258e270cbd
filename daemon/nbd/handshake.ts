/**
 * Fixed-newstyle negotiation as pve-cbt needs it (doc/proto.md): structured replies (required: reads
 * must be able to report holes and errors), the wanted metadata contexts, then NBD_OPT_GO asking for
 * block size constraints. Options are sent one at a time, as the protocol demands.
 */
import {
  DEFAULT_MAX_BLOCK_SIZE,
  DEFAULT_MIN_BLOCK_SIZE,
  DEFAULT_PREFERRED_BLOCK_SIZE,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_OPT_GO,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_FLAG_ERROR,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  optionName,
  replyTypeName,
} from './nbd-constants';
import { NbdOptionRefusedError, NbdProtocolError } from './nbd-errors';
import {
  GREETING_SIZE,
  OPTION_REPLY_HEADER_SIZE,
  decodeGreeting,
  decodeInfo,
  decodeMetaContext,
  decodeOptionReplyHeader,
  encodeClientFlags,
  encodeGoData,
  encodeMetaContextData,
  encodeOption,
} from './option-codec';

export interface HandshakeIo {
  readExact(length: number, what: string): Promise<Buffer>;
  write(data: Buffer): void;
}

export interface ExportInfo {
  size: number;
  transmissionFlags: number;
  minBlockSize: number;
  preferredBlockSize: number;
  maxBlockSize: number;
  /** Negotiated metadata contexts: name → id. */
  contexts: Map<string, number>;
}

interface OptionReply {
  type: number;
  payload: Buffer;
}

async function readReply(io: HandshakeIo, option: number): Promise<OptionReply> {
  const what = `reply to ${optionName(option)}`;
  const header = decodeOptionReplyHeader(await io.readExact(OPTION_REPLY_HEADER_SIZE, what), option);
  const payload = header.length > 0 ? await io.readExact(header.length, what) : Buffer.alloc(0);
  return { type: header.type, payload };
}

function refused(option: number, reply: OptionReply): Error {
  const isError = (reply.type & NBD_REP_FLAG_ERROR) !== 0;
  return NbdOptionRefusedError({
    option: optionName(option),
    reply: replyTypeName(reply.type),
    message: isError ? reply.payload.toString('utf8') : 'unexpected reply type',
  });
}

export async function negotiate(io: HandshakeIo, exportName: string, metaContexts: string[]): Promise<ExportInfo> {
  const greeting = decodeGreeting(await io.readExact(GREETING_SIZE, 'server greeting'));
  if ((greeting.handshakeFlags & NBD_FLAG_FIXED_NEWSTYLE) === 0) {
    throw NbdProtocolError({ reason: 'server does not support fixed newstyle negotiation' });
  }
  const noZeroes = (greeting.handshakeFlags & NBD_FLAG_NO_ZEROES) !== 0 ? NBD_FLAG_C_NO_ZEROES : 0;
  io.write(encodeClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | noZeroes));

  io.write(encodeOption(NBD_OPT_STRUCTURED_REPLY));
  const sr = await readReply(io, NBD_OPT_STRUCTURED_REPLY);
  if (sr.type !== NBD_REP_ACK) throw refused(NBD_OPT_STRUCTURED_REPLY, sr);

  const contexts = new Map<string, number>();
  if (metaContexts.length > 0) {
    io.write(encodeOption(NBD_OPT_SET_META_CONTEXT, encodeMetaContextData(exportName, metaContexts)));
    for (;;) {
      const r = await readReply(io, NBD_OPT_SET_META_CONTEXT);
      if (r.type === NBD_REP_ACK) break;
      if (r.type !== NBD_REP_META_CONTEXT) throw refused(NBD_OPT_SET_META_CONTEXT, r);
      const ctx = decodeMetaContext(r.payload);
      contexts.set(ctx.name, ctx.id);
    }
  }

  io.write(encodeOption(NBD_OPT_GO, encodeGoData(exportName, [NBD_INFO_BLOCK_SIZE])));
  let exportInfo: { size: number; transmissionFlags: number } | undefined;
  let blockSize = { minimum: DEFAULT_MIN_BLOCK_SIZE, preferred: DEFAULT_PREFERRED_BLOCK_SIZE, maximum: DEFAULT_MAX_BLOCK_SIZE };
  for (;;) {
    const r = await readReply(io, NBD_OPT_GO);
    if (r.type === NBD_REP_ACK) break;
    if (r.type !== NBD_REP_INFO) throw refused(NBD_OPT_GO, r);
    const info = decodeInfo(r.payload);
    if (info.kind === 'export') exportInfo = info;
    else if (info.kind === 'block-size') blockSize = info;
  }
  if (!exportInfo) throw NbdProtocolError({ reason: `NBD_OPT_GO succeeded without NBD_INFO_EXPORT (info ${NBD_INFO_EXPORT})` });
  return {
    size: exportInfo.size,
    transmissionFlags: exportInfo.transmissionFlags,
    minBlockSize: blockSize.minimum,
    preferredBlockSize: blockSize.preferred,
    maxBlockSize: Math.min(blockSize.maximum, DEFAULT_MAX_BLOCK_SIZE),
    contexts,
  };
}
