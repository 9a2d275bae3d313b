-- nd.kmslog from Lua and the kms-logs runbook through the real CLI: the mixed log (plain, tracing-wrapped,
-- prefixed, malformed lines and journald noise), each filter, ids mode, --json output, stdin and the journal (a fake
-- journalctl on PATH), and the interpretation rules as findings.
local kmslog = require "nd.kmslog"
local fs = require "nd.fs"
local json = require "nd.json"

local MIXED = spec.source_dir .. "/tests/data/kmslogs/mixed.log"

local function nitrodiag(args, opts)
  opts = opts or {}
  local argv = { spec.nitrodiag }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.env = { PATH = opts.path or os.getenv("PATH"), NITRODIAG_CACHE_DIR = os.getenv("NITRODIAG_CACHE_DIR"), HOME = os.getenv("HOME") or "/root", NITRODIAG_PATH = "" }
  argv.stdin = opts.stdin
  argv.timeout = 60
  return assert(spec.run(argv))
end

local function run_json(args, opts)
  local a = { "--json" }
  for _, x in ipairs(args) do a[#a + 1] = x end
  local r = nitrodiag(a, opts)
  local res = json.decode(r.stdout)
  truthy(res, "JSON on stdout: " .. r.stdout .. r.stderr)
  return res, r
end

local function ids_of(records)
  local out = {}
  for _, rec in ipairs(records) do out[#out + 1] = (rec.kind == "request" and ">" or "<") .. rec.request_id end
  return out
end

local function codes(res)
  local out = {}
  for _, f in ipairs(res.findings) do out[#out + 1] = f.code end
  table.sort(out)
  return out
end

describe("nd.kmslog", function()
  it("scans the mixed log with summary, records and ids", function()
    local sc <close> = assert(kmslog.new())
    assert(sc:scan_file(MIXED))
    local r = sc:result()
    eq(r.stats.lines, 17)
    eq(r.stats.events, 10)
    eq(r.stats.wrapped, 4)
    eq(r.stats.noise, 3)
    eq(r.stats.malformed, 2)
    eq(r.errors, { { code = "upstream_throttled", count = 2 }, { code = "timeout", count = 1 },
                   { code = "upstream_access_denied", count = 1 } })
    eq(r.latency, { count = 6, min = 5, p50 = 40, p90 = 800, p95 = 800, p99 = 800, max = 800 })
    eq(#r.ids, 4)
    eq(#r.records, 10)
    local wrapped = r.records[4]
    eq(wrapped.form, "wrapped")
    eq(wrapped.raw_code, "UpstreamThrottled")
    eq(wrapped.code, "upstream_throttled")
    eq(wrapped.ts, 1769508001.25)
    eq(wrapped.event.metrics.rate_limited_total, 2)
    match(wrapped.json, '^{"event":"kms_proxy_response","request_id":"r2"')
    local rl
    for _, c in ipairs(r.counters) do if c.name == "rate_limited_total" then rl = c end end
    eq({ rl.first, rl.last, rl.delta, rl.resets, rl.samples }, { 0, 5, 5, 0, 6 })
  end)

  it("feeds in pieces like one pass, stops when on_record says false, and keeps only `keep` records", function()
    local data = assert(fs.read(MIXED))
    local sc <close> = assert(kmslog.new{ keep = 2 })
    for i = 1, #data, 13 do assert(sc:feed(data:sub(i, i + 12))) end
    assert(sc:finish())
    local r = sc:result()
    eq(r.stats.events, 10)
    eq(#r.records, 2)
    eq(r.records_dropped, 8)
    local seen = 0
    local sc2 <close> = assert(kmslog.new{ on_record = function() seen = seen + 1 return false end })
    local ok, msg, code = sc2:scan_file(MIXED)
    eq({ ok, code, seen }, { nil, "ECANCELED", 1 })
    match(msg, "stopped")
    local sc3 <close> = assert(kmslog.new{ on_record = function() error("boom in callback") end })
    raises(function() sc3:scan_file(MIXED) end, "boom in callback")
  end)

  it("normalises codes, parses times and rejects bad options", function()
    eq(kmslog.normalize_code("UpstreamAccessDenied"), "upstream_access_denied")
    eq(kmslog.normalize_code("upstream_throttled"), "upstream_throttled")
    eq(kmslog.parse_time("2026-01-27T10:00:00Z"), 1769508000)
    eq(kmslog.parse_time("-1h", 7200), 3600)
    local t, msg, code = kmslog.parse_time("soon")
    eq({ t, code }, { nil, "EINVAL" })
    match(msg, "bad time 'soon'")
    local s, m2, c2 = kmslog.new{ request_id = "" }
    eq({ s, c2 }, { nil, "EINVAL" })
    match(m2, "empty filter")
    local s3, m3 = kmslog.new{ since = "2026-01-28", ["until"] = "2026-01-27" }
    eq(s3, nil)
    match(m3, "ends before it starts")
    local sc <close> = assert(kmslog.new())
    local ok, m4, c4 = sc:scan_file("/nonexistent/kms.log")
    eq({ ok, c4 }, { nil, "ENOENT" })
    match(m4, "/nonexistent/kms.log")
  end)
end)

describe("nitrodiag kms-logs", function()
  it("reads wrapped and plain lines together, with every event and the summary", function()
    local res, r = run_json({ "kms-logs", MIXED })
    eq(r.exit_code, 1) -- access denied is a failure
    eq(res.output.stats.events, 10)
    eq(#res.output.records, 10)
    eq(res.output.records[3].line, 5)
    eq(res.output.records[3].source, MIXED)
    eq(res.output.records[3].form, "wrapped")
    eq(codes(res), { "KMS_ACCESS_DENIED", "KMS_CIRCUIT_WAIT_MISCOUNTED", "KMS_MALFORMED_LINES", "KMS_PASCALCASE_CODES", "KMS_THROTTLED",
                     "KMS_TIMEOUTS", "KMS_WRAPPED_LOG" })
  end)

  it("filters by request_id, trace_id, op, code, errors, throttled and time", function()
    local cases = {
      { { "request_id=r2" }, { ">r2", "<r2" } },
      { { "trace_id=t-2" }, { ">r2", "<r2", "<r3" } },
      { { "op=Decrypt" }, { ">r2", "<r2", ">r4", "<r4" } },
      { { "errors=true" }, { "<r2", "<r3", "<r4", "<r5" } },
      { { "throttled=true" }, { "<r2", "<r3" } },
      { { "code=UpstreamAccessDenied" }, { "<r5" } },
      { { "code=timeout", "op=decrypt" }, { "<r4" } },
      { { "since=2026-01-27T10:00:01Z", "until=2026-01-27T10:00:07Z" }, { ">r2", "<r2", ">r7" } },
    }
    for _, c in ipairs(cases) do
      local args = { "kms-logs", MIXED }
      for _, a in ipairs(c[1]) do args[#args + 1] = a end
      local res = run_json(args)
      eq(ids_of(res.output.records), c[2], table.concat(c[1], " "))
    end
  end)

  it("lists kms_request_ids for CloudTrail in ids mode", function()
    local r = nitrodiag({ "kms-logs", MIXED, "mode=ids", "throttled=true" })
    match(r.stdout, "1b2c3d4e%-0000%-4000%-8000%-000000000002%s+r2%s+upstream_throttled%s+2026%-01%-27T10:00:01.250Z")
    match(r.stdout, "1b2c3d4e%-0000%-4000%-8000%-000000000003%s+r3%s+upstream_throttled")
    falsy(r.stdout:find("000000000005"), "access denied is not throttled")
    local res = run_json({ "kms-logs", MIXED, "mode=ids" })
    eq(#res.output.ids, 4)
    eq(#res.output.records, 0)
  end)

  it("prints the unwrapped lines and the hand-computed summary", function()
    local r = nitrodiag({ "kms-logs", MIXED, "op=Decrypt" })
    match(r.stdout, "mixed%.log:6: {\"event\":\"kms_proxy_response\",\"request_id\":\"r2\"")
    match(r.stdout, "latency %(duration_ms, 2 responses%): min 250  p50 250  p90 800")
    match(r.stdout, "errors: upstream_throttled 1, timeout 1")
    match(r.stdout, "retries_total%s+2 → 7%s+%+5")
  end)

  it("reads stdin and a journal (fake journalctl), and says when there is nothing", function()
    local data = assert(fs.read(MIXED))
    local res = run_json({ "kms-logs", "-", "errors=true" }, { stdin = data })
    eq(res.output.stats.matched, 4)
    eq(res.output.sources[1].path, "-")

    local dir = spec.tmpdir()
    assert(fs.write(dir .. "/mixed.log", data))
    assert(fs.write(dir .. "/journalctl", "#!/bin/sh\necho \"$@\" > " .. dir .. "/argv\ncat " .. dir .. "/mixed.log\n", tonumber("755", 8)))
    local jr = run_json({ "kms-logs", "journal", "mode=summary", "since=@1769508000", "unit=my-proxy" },
      { path = dir .. ":" .. os.getenv("PATH") })
    eq(jr.output.stats.events, 10)
    eq(jr.output.sources[1].path, "journal:my-proxy")
    eq(assert(fs.read(dir .. "/argv")), "-u my-proxy -o cat --no-pager --since=@1769508000\n")

    -- a journal bigger than a pipe read, with a 100 KiB line: read in chunks as they come (on_data), lines split
    -- across chunks and the long line joined, it gives the same summary as the same text from a file
    local long = '{"event":"kms_proxy_request","request_id":"long","op":"Decrypt","pad":"' .. string.rep("x", 100 * 1024) .. '"}\n'
    assert(fs.write(dir .. "/mixed.log", string.rep(data, 300) .. long .. data))
    local fr = run_json({ "kms-logs", dir .. "/mixed.log", "mode=summary" })
    local jr3 = run_json({ "kms-logs", "journal", "mode=summary" }, { path = dir .. ":" .. os.getenv("PATH") })
    truthy(fr.output.stats.bytes > 300000)
    eq(jr3.output.stats, fr.output.stats)
    eq(jr3.output.latency, fr.output.latency)
    eq(jr3.output.errors, fr.output.errors)

    local empty = dir .. "/empty.log"
    assert(fs.write(empty, "-- No entries --\nStarted kms-proxy-host.service\n"))
    local er, r = run_json({ "kms-logs", empty })
    eq(r.exit_code, 0)
    eq(er.verdict, "warn")
    eq(codes(er), { "KMS_NO_EVENTS" })
    local jr2, r3 = run_json({ "kms-logs", "journal" }, { path = dir .. "/nowhere" }) -- no journalctl on PATH
    eq(r3.exit_code, 1)
    eq(codes(jr2), { "KMS_SOURCE_UNREADABLE" })
    match(jr2.findings[1].message, "command not found: journalctl")
    local nr, r2 = run_json({ "kms-logs", dir .. "/missing.log" })
    eq(r2.exit_code, 1)
    eq(codes(nr), { "KMS_SOURCE_UNREADABLE" })
  end)

  it("on the simulated host, auto reads the journal (no proxy file there) and says there are no events", function()
    local res, r = run_json({ "--sim", "healthy", "kms-logs" })
    eq(r.exit_code, 0, r.stderr)
    eq(res.output.sources[1].path, "journal:kms-proxy-host")
    eq(codes(res), { "KMS_NO_EVENTS" })
  end)

  it("interprets: throttled without a rising rate_limited_total, timeouts without retries, unavailable", function()
    local dir = spec.tmpdir()
    local lines = {
      '{"event":"kms_proxy_response","request_id":"a","ok":false,"error_code":"upstream_throttled","duration_ms":5,"metrics":{"rate_limited_total":3,"retries_total":1}}',
      '{"event":"kms_proxy_response","request_id":"b","ok":false,"error_code":"timeout","duration_ms":800,"metrics":{"rate_limited_total":3,"retries_total":1}}',
      '{"event":"kms_proxy_response","request_id":"c","ok":false,"error_code":"UpstreamUnavailable","duration_ms":9,"metrics":{"rate_limited_total":3,"retries_total":1}}',
    }
    assert(fs.write(dir .. "/k.log", table.concat(lines, "\n") .. "\n"))
    local res, r = run_json({ "kms-logs", dir .. "/k.log" })
    eq(r.exit_code, 0)
    eq(res.verdict, "warn")
    eq(codes(res), { "KMS_PASCALCASE_CODES", "KMS_THROTTLED", "KMS_TIMEOUTS", "KMS_UNAVAILABLE" })
    for _, f in ipairs(res.findings) do
      if f.code == "KMS_THROTTLED" then match(f.remediation, "before the proxy's own rate limit engaged") end
      if f.code == "KMS_TIMEOUTS" then match(f.message, "retries_total did not rise") end
    end
  end)
end)
