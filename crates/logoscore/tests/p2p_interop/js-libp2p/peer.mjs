// A js-libp2p 3 peer for logos-core's p2p interop tests (crates/logoscore/tests/p2p_interop.rs).
//
// Listens on 127.0.0.1 only (TCP + Noise + Yamux, identify) and handles PROTOCOL (argv[2]):
// every length-prefixed message read is written back, until the remote finishes; then it
// finishes too. Prints one JSON line {peer, addrs} when ready, then answers one JSON line per
// command read from stdin (one JSON object per line):
//   {"op": "exchange", "addr", "send": [text…]}   dial, send each as a message, half-close,
//                                                 read messages to the end: {ok, got: [text…]}
//   {"op": "abortAfterReply", "addr", "send": text} send one message, read one, then
//                                                 abort(): {ok, got: text}
//   {"op": "handled"}                             what the handler saw: {ok, handled: [...]},
//                                                 each {ok, messages} or {error, message}
//   {"op": "hold", "addr", "send": text}          send one message, read one back, keep the
//                                                 stream open: {ok, got, id}
//   {"op": "waitEnd", "id"}                       how the held stream ended: {ok, end: "eof"}
//                                                 (the remote finished) or the error
// "exchange", "abortAfterReply" and "hold" take an optional "protocol" (default PROTOCOL).
// Errors answer {ok: false, error: <error class name>, message}. Never decides a test's
// outcome: it reports what js-libp2p did.

import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'
import { lpStream } from '@libp2p/utils'
import readline from 'node:readline'

const PROTOCOL = process.argv[2] ?? '/logos/interop/1.0.0'
const MAX = 4 * 1024 * 1024
const enc = new TextEncoder()
const dec = new TextDecoder()

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify() }
})

// Reads one message; null when the remote finished cleanly before a new one began.
async function readMessage (lp) {
  try {
    return dec.decode((await lp.read()).subarray())
  } catch (err) {
    if (err.name === 'UnexpectedEOFError') return null
    throw err
  }
}

const handled = []
await node.handle(PROTOCOL, async (stream) => {
  const lp = lpStream(stream, { maxDataLength: MAX })
  let messages = 0
  try {
    for (let m = await readMessage(lp); m !== null; m = await readMessage(lp)) {
      await lp.write(enc.encode(m))
      messages++
    }
    await stream.close()
    handled.push({ ok: true, messages })
  } catch (err) {
    handled.push({ error: err.name, message: String(err.message) })
  }
})

async function open (addr, protocol) {
  return node.dialProtocol(multiaddr(addr), protocol ?? PROTOCOL)
}

const held = new Map()
let nextHeld = 0

async function run (cmd) {
  switch (cmd.op) {
    case 'exchange': {
      const stream = await open(cmd.addr, cmd.protocol)
      const lp = lpStream(stream, { maxDataLength: MAX })
      for (const m of cmd.send) await lp.write(enc.encode(m))
      await stream.close()
      const got = []
      for (let m = await readMessage(lp); m !== null; m = await readMessage(lp)) got.push(m)
      return { ok: true, got }
    }
    case 'abortAfterReply': {
      const stream = await open(cmd.addr, cmd.protocol)
      const lp = lpStream(stream, { maxDataLength: MAX })
      await lp.write(enc.encode(cmd.send))
      const got = await readMessage(lp)
      stream.abort(new Error('aborted by the interop test'))
      return { ok: true, got }
    }
    case 'hold': {
      const stream = await open(cmd.addr, cmd.protocol)
      // How the stream ends, from its events: a reset that arrives while no read is
      // pending reads as a plain end of file through lpStream, so watch the stream itself.
      const ended = new Promise((resolve) => {
        stream.addEventListener('close', (evt) => resolve(evt.error != null
          ? { ok: false, error: evt.error.name, message: String(evt.error.message) }
          : { ok: true, end: 'closed' }), { once: true })
        stream.addEventListener('remoteCloseWrite', () => resolve({ ok: true, end: 'eof' }), { once: true })
      })
      const lp = lpStream(stream, { maxDataLength: MAX })
      await lp.write(enc.encode(cmd.send))
      const got = await readMessage(lp)
      const id = ++nextHeld
      held.set(id, ended)
      return { ok: true, got, id }
    }
    case 'waitEnd': {
      const ended = held.get(cmd.id)
      held.delete(cmd.id)
      return await ended
    }
    case 'handled':
      return { ok: true, handled }
    default:
      return { ok: false, error: 'UnknownCommand', message: String(cmd.op) }
  }
}

console.log(JSON.stringify({
  peer: node.peerId.toString(),
  addrs: node.getMultiaddrs().map(String)
}))

for await (const line of readline.createInterface({ input: process.stdin })) {
  let answer
  try {
    answer = await run(JSON.parse(line))
  } catch (err) {
    answer = { ok: false, error: err.name, message: String(err.message) }
  }
  console.log(JSON.stringify(answer))
}
await node.stop()
