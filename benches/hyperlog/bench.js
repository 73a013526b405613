// The reference JavaScript hyperlog on the workloads of benches/scenarios.rs.
//
//   npm install            (in this directory, once)
//   node bench.js --backend leveldb|memdb --workload append|batch|clone|diverge|insync \
//     --n 10000 --payload 100
//
// Without --backend/--workload it runs every combination, each in its own child process (so
// each peak RSS is its own). Prints one JSON line per run:
//   {"impl":"hyperlog","backend":...,"workload":...,"n":...,"payload":...,"secs":...,
//    "nodes_per_s":...,"peak_rss_kib":...}
//
// append: n single log.append calls, each waiting for its callback (links to the current heads,
//         so a chain), like braidlog's Log::append.
// batch:  log.batch of 10k docs at a time; every doc links the last node of the previous batch
//         (hyperlog computes the keys, so a doc cannot link one of its own batch).
// clone:  a log with n appended nodes replicated into an empty one through a pair of
//         replicate() streams in this process; the time of the replication only.
// diverge: a log of n nodes replicated into an empty one (untimed), then each appends
//         max(1, n/100) nodes of its own and the two replicate (timed): two-sided divergence.
// insync: the same two logs, in sync, replicate again (timed): the in-sync check.
// "moved" in the output is the number of nodes the timed replication transferred.
// leveldb writes are not fsynced (leveldown's default), so they compare with braidlog NoSync.
'use strict'

const fs = require('fs')
const os = require('os')
const path = require('path')
const { execFileSync } = require('child_process')
const hyperlog = require('hyperlog')
const pump = require('pump')

const BATCH = 10000

function arg (name, dflt) {
  const i = process.argv.indexOf('--' + name)
  return i >= 0 ? process.argv[i + 1] : dflt
}

// Same shape as the Rust payloads: an 8-byte counter then fixed filler.
function payload (i, size) {
  const p = Buffer.alloc(size)
  let x = 0x9e3779b9
  for (let j = 8; j < size; j++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    p[j] = x & 0xff
  }
  const c = Buffer.alloc(8)
  c.writeBigUInt64LE(BigInt(i))
  c.copy(p, 0, 0, Math.min(8, size))
  return p
}

let dirs = []
function makeDb (backend) {
  if (backend === 'memdb') return require('memdb')()
  const dir = fs.mkdtempSync(path.join(process.env.BRAID_BENCH_DIR || os.tmpdir(), 'hyperlog-'))
  dirs.push(dir)
  return require('level')(dir)
}

function appendN (log, n, size, cb) {
  let i = 0
  const next = (err) => {
    if (err) return cb(err)
    if (i === n) return cb()
    log.append(payload(i++, size), next)
  }
  next()
}

function batchN (log, n, size, cb) {
  let i = 0
  let last = null
  const next = (err, nodes) => {
    if (err) return cb(err)
    if (nodes && nodes.length) last = nodes[nodes.length - 1].key
    if (i === n) return cb()
    const docs = []
    for (const end = Math.min(n, i + BATCH); i < end; i++) {
      docs.push({ links: last ? [last] : [], value: payload(i, size) })
    }
    log.batch(docs, next)
  }
  next()
}

function replicate (a, b, cb) {
  const s1 = a.replicate()
  const s2 = b.replicate()
  pump(s1, s2, s1, cb)
}

function count (log, cb) {
  let got = 0
  log.createReadStream().on('data', () => got++).on('end', () => cb(got))
}

// Appends n chained nodes with payload counters from `first`.
function appendFrom (log, first, n, size, cb) {
  let i = 0
  const next = (err) => {
    if (err) return cb(err)
    if (i === n) return cb()
    log.append(payload(first + i++, size), next)
  }
  next()
}

function run (backend, workload, n, size, done) {
  const a = hyperlog(makeDb(backend))
  if (workload === 'append' || workload === 'batch') {
    const start = process.hrtime.bigint()
    const f = workload === 'append' ? appendN : batchN
    return f(a, n, size, (err) => done(err, Number(process.hrtime.bigint() - start) / 1e9))
  }
  if (workload === 'diverge' || workload === 'insync') {
    const d = workload === 'diverge' ? Math.max(1, Math.floor(n / 100)) : 0
    return batchN(a, n, size, (err) => {
      if (err) return done(err)
      const b = hyperlog(makeDb(backend))
      replicate(a, b, (err) => {
        if (err) return done(err)
        appendFrom(a, 1e9, d, size, (err) => {
          if (err) return done(err)
          appendFrom(b, 2e9, d, size, (err) => {
            if (err) return done(err)
            const start = process.hrtime.bigint()
            replicate(a, b, (err) => {
              const secs = Number(process.hrtime.bigint() - start) / 1e9
              if (err) return done(err)
              count(b, (got) => {
                if (got !== n + 2 * d) return done(new Error(`b has ${got} of ${n + 2 * d}`))
                done(null, secs, 2 * d)
              })
            })
          })
        })
      })
    })
  }
  // clone: fill a, then replicate into an empty b
  batchN(a, n, size, (err) => {
    if (err) return done(err)
    const b = hyperlog(makeDb(backend))
    const start = process.hrtime.bigint()
    const s1 = a.replicate()
    const s2 = b.replicate()
    pump(s1, s2, s1, (err) => {
      const secs = Number(process.hrtime.bigint() - start) / 1e9
      if (err) return done(err)
      // count what arrived
      let got = 0
      b.createReadStream().on('data', () => got++).on('end', () => {
        if (got !== n) return done(new Error(`clone got ${got} of ${n} nodes`))
        done(null, secs, n)
      })
    })
  })
}

function cleanup () {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
}

const n = parseInt(arg('n', '10000'), 10)
const size = parseInt(arg('payload', '100'), 10)
const backend = arg('backend')
const workload = arg('workload')

if (backend && workload) {
  run(backend, workload, n, size, (err, secs, moved) => {
    cleanup()
    if (err) { console.error(err); process.exit(1) }
    console.log(JSON.stringify({
      impl: 'hyperlog',
      backend,
      workload,
      n,
      payload: size,
      secs,
      moved: moved === undefined ? n : moved,
      nodes_per_s: Math.round((moved === undefined ? n : moved) / secs),
      peak_rss_kib: process.resourceUsage().maxRSS
    }))
  })
} else {
  for (const b of ['leveldb', 'memdb']) {
    for (const w of ['append', 'batch', 'clone']) {
      process.stdout.write(execFileSync(process.execPath, [__filename,
        '--backend', b, '--workload', w, '--n', String(n), '--payload', String(size)]))
    }
  }
}
