/**
 * What the control socket (ipc-server.ts) keeps per client connection: its line framer, requests
 * in flight (each abortable), its idle and unfinished-message timers, its slot (a reserved one
 * serves only lifecycle events), frames received and not yet handled, and how it is closing.
 */
import type net from 'node:net';
import { LineFramer } from '../../shared/ipc/line-framer';

export interface Connection {
  socket: net.Socket;
  framer: LineFramer;
  inflight: Map<string, AbortController>;
  frameTimer: NodeJS.Timeout | null;
  idleTimer: NodeJS.Timeout | null;
  /** When the connection last became idle (no request in flight); for eviction. */
  idleSince: number;
  /** When it last sent a complete, valid request (answered or refused); 0 before the first. */
  lastRequestAt: number;
  /** On a reserved slot: serves only reservedTypes. */
  reserved: boolean;
  /** The client shut down its sending side; end ours once every reply is out. */
  readEnded: boolean;
  /** Frames received and not handled yet (ipc-server.ts drain). */
  pending: string[];
  /** Complete frames received so far: the frame timer's verdict knows whether its frame finished. */
  framesSeen: number;
  draining: boolean;
  /** Set once a message exceeded the size bound; the connection is dropped after `pending`. */
  overflowBytes: number | null;
  closing: boolean;
  peer: number;
}

/** A fresh connection: idle from now, on an ordinary slot until admission says otherwise. */
export function newConnection(socket: net.Socket, maxMessageBytes: number, peer: number): Connection {
  return {
    socket,
    framer: new LineFramer(maxMessageBytes),
    inflight: new Map(),
    frameTimer: null,
    idleTimer: null,
    idleSince: Date.now(),
    lastRequestAt: 0,
    reserved: false,
    readEnded: false,
    pending: [],
    framesSeen: 0,
    draining: false,
    overflowBytes: null,
    closing: false,
    peer,
  };
}
