-- scripts/kms-logs.lua — read KMS proxy logs (files, stdin or journald), filter them, list kms_request_id values
-- for CloudTrail and support cases, summarise errors, latency and counters, and interpret them by the operators'
-- rules. Replaces the greps of the EphemeralML runbook, which missed PascalCase codes and the tracing-wrapped lines.
-- The scanning is nd.kmslog (core/kmslog.c); this file picks the sources, renders and interprets. See docs/kms-logs.md.
local kmslog = require "nd.kmslog"
local proc = require "nd.proc"
local host = require "nd.host"
local fs = require "nd.fs"
local json = require "nd.json"
local diagnose = require "nd.diagnose"

local DEFAULT_FILES = { "/var/log/ephemeralml-kms-proxy.log", "/var/log/nitrodiag-kms-proxy.log" }

local rendered -- the human report of the last run (see report below)

local function under_root(path)
  local root = host.root()
  if root == "/" or root == "" then return path end
  return root .. path
end

local fmt_num = require("nd.pretty").number

local function fmt_time(ts)
  if not ts then return "-" end
  local secs = math.floor(ts)
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. string.format(".%03dZ", math.floor((ts - secs) * 1000 + 0.5) % 1000)
end

local function human_bytes(n)
  if n >= 1 << 30 then return string.format("%.1f GiB", n / (1 << 30)) end
  if n >= 1 << 20 then return string.format("%.1f MiB", n / (1 << 20)) end
  if n >= 1 << 10 then return string.format("%.1f KiB", n / (1 << 10)) end
  return n .. " B"
end

-- Which sources to read: the argument's list, or the default log files when they exist, else the journal.
local function resolve_sources(list)
  local out = {}
  for _, src in ipairs(list) do
    if src == "auto" then
      for _, f in ipairs(DEFAULT_FILES) do
        local p = under_root(f)
        if fs.exists(p) then out[#out + 1] = { kind = "file", path = p } end
      end
      if #out == 0 then out[#out + 1] = { kind = "journal" } end
    elseif src == "journal" then
      out[#out + 1] = { kind = "journal" }
    elseif src == "-" then
      out[#out + 1] = { kind = "stdin", path = "-" }
    else
      out[#out + 1] = { kind = "file", path = src }
    end
  end
  return out
end

local function read_journal(s, sc, src)
  local a = s.args
  local argv = { "journalctl", "-u", a.unit, "-o", "cat", "--no-pager" }
  if s.data.since then argv[#argv + 1] = "--since=@" .. string.format("%.0f", math.floor(s.data.since)) end
  if s.data["until"] then argv[#argv + 1] = "--until=@" .. string.format("%.0f", math.ceil(s.data["until"])) end
  argv.timeout = 120
  argv.cap = 64 * 1024
  local feed_err
  -- the output as read, not line by line: the scanner splits lines itself (one Lua call per 64 KiB, not per line)
  argv.on_data = function(stream, chunk)
    if stream ~= "stdout" or feed_err then return end
    local ok, err = sc:feed(chunk)
    if not ok then feed_err = err end
  end
  s:progress("reading journalctl -u " .. a.unit)
  s:log("$ " .. table.concat(argv, " "))
  local r, err = proc.run(argv)
  sc:finish()
  if not r then return nil, "journal: " .. tostring(err) .. " (is this a systemd host? give a log file or - instead)" end
  if feed_err then return nil, "journal: " .. tostring(feed_err) end
  if r.exit_code ~= 0 then
    local msg = (r.stderr or ""):match("[^\n]+") or r.status
    return nil, string.format("journalctl -u %s: %s", a.unit, msg)
  end
  src.path = "journal:" .. a.unit
  return true
end

-- Human rendering -------------------------------------------------------------------------------------------------

local function render(s, res)
  local a, out = s.args, {}
  local function add(...) out[#out + 1] = string.format(...) end
  if a.mode == "ids" then
    add("kms_request_id                          request_id                            code                    time")
    for _, id in ipairs(res.ids) do
      add("%-39s %-37s %-23s %s", id.kms_request_id, id.request_id or "-", id.code or "ok", fmt_time(id.ts))
    end
    if #res.ids == 0 then add("(no kms_request_id in the selection)") end
    if res.ids_dropped > 0 then add("… and %d more not kept", res.ids_dropped) end
    add("")
  elseif a.mode == "lines" then
    -- the lines themselves were printed while scanning
    if res.print_dropped > 0 then
      add("… %d more matching lines not shown (limit=%d; limit=0 shows all)", res.print_dropped, a.limit)
    end
  end
  local st = res.stats
  for _, src in ipairs(res.sources) do
    add("source: %s (%d lines, %s)", src.path, src.lines or 0, human_bytes(src.bytes or 0))
  end
  add("lines: %d: %d KMS events (%d plain, %d wrapped, %d after a prefix), %d other JSON, %d malformed, %d noise, %d blank, %d skipped by the prefilter",
    st.lines, st.events, st.plain, st.wrapped, st.prefixed, st.other, st.malformed, st.noise, st.blank, st.skipped)
  add("matched: %d (%d requests, %d responses)%s", st.matched, st.matched_requests, st.matched_responses,
    st.untimed > 0 and string.format("; %d events without a timestamp left out of the time range", st.untimed) or "")
  if #res.errors > 0 then
    local parts = {}
    for _, e in ipairs(res.errors) do parts[#parts + 1] = e.code .. " " .. e.count end
    add("errors: %s", table.concat(parts, ", "))
  else
    add("errors: none")
  end
  local l = res.latency
  if l.count > 0 then
    add("latency (duration_ms, %d responses): min %s  p50 %s  p90 %s  p95 %s  p99 %s  max %s", l.count,
      fmt_num(l.min), fmt_num(l.p50), fmt_num(l.p90), fmt_num(l.p95), fmt_num(l.p99), fmt_num(l.max))
  end
  if #res.counters > 0 then
    add("counters (first → last, change):")
    for _, c in ipairs(res.counters) do
      add("  %-22s %10s → %-10s %s%s", c.name, fmt_num(c.first), fmt_num(c.last),
        c.monotonic and ("+" .. fmt_num(c.delta)) or ("Δ " .. fmt_num(c.delta)),
        c.resets > 0 and string.format("  (%d restarts)", c.resets) or "")
    end
  end
  return table.concat(out, "\n")
end

-- Interpretation --------------------------------------------------------------------------------------------------

local function finish_summary(s, res)
  s:output {
    mode = s.args.mode,
    sources = json.array(res.sources),
    stats = res.stats,
    errors = json.array(res.errors),
    latency = res.latency,
    counters = json.array(res.counters),
    ids = json.array(res.ids),
    ids_dropped = res.ids_dropped,
    records = json.array((s.args.mode == "lines" and s.json) and res.records or {}),
    records_dropped = res.records_dropped,
    printed = res.printed,
  }
end

return {
  name = "kms-logs",
  description = "Read KMS proxy logs (files, stdin, journald): filter, list kms_request_ids, summarise and interpret",
  categories = { "kms", "logs", "triage" },
  args = {
    { name = "source", type = "list", positional = 1, default = "auto",
      help = "log files (comma-separated; .gz too), - for stdin, journal for journalctl -u UNIT, auto = the proxy log file or the journal" },
    { name = "mode", type = "string", default = "lines", choices = { "lines", "summary", "ids" },
      help = "lines: matching events then the summary; summary: only the summary; ids: kms_request_id values for CloudTrail/support" },
    { name = "request_id", type = "string", help = "only this request_id (the id the enclave sent)" },
    { name = "trace_id", type = "string", help = "only this trace_id" },
    { name = "op", type = "string", help = "Decrypt or GenerateDataKey (responses match through their request)" },
    { name = "code", type = "string", help = "only this error code, PascalCase or snake_case (e.g. upstream_access_denied)" },
    { name = "errors", type = "boolean", default = false, help = "only failed responses" },
    { name = "throttled", type = "boolean", default = false, help = "only responses throttled by KMS (upstream_throttled)" },
    { name = "since", type = "string", help = "from this time: 2026-01-27T10:00:00Z, epoch seconds, -15m, -2h, -1d" },
    { name = "until", type = "string", help = "up to this time (same forms)" },
    { name = "unit", type = "string", default = "kms-proxy-host", help = "systemd unit for source=journal" },
    { name = "limit", type = "integer", default = 200, min = 0, help = "matching lines shown in mode=lines (0: all)" },
  },
  deadline = 600,
  collect = false,
  steps = {
    { name = "read", timeout = 580, required = true,
      run = function(s)
        local a = s.args
        rendered = nil
        for _, k in ipairs({ "since", "until" }) do
          if a[k] then
            local t, err = kmslog.parse_time(a[k])
            if not t then s:usage(k .. ": " .. err) end
            s.data[k] = t
          end
        end
        -- Human output streams the matching lines to stdout as they are found (like grep); --json keeps them as
        -- records in the result. Either way a few records are kept for the interpretation.
        local json_out = s.json
        local limit = a.limit == 0 and 1e15 or a.limit
        local stream = a.mode == "lines" and not json_out
        local sc <close>, err = kmslog.new{
          request_id = a.request_id, trace_id = a.trace_id, op = a.op, code = a.code,
          errors = a.errors, throttled = a.throttled, since = s.data.since, ["until"] = s.data["until"],
          keep = (a.mode == "lines" and json_out) and limit or 64, events = json_out and true or false,
          -- the ids are listed in mode=ids; elsewhere a few are enough for the JSON output (bounded memory)
          max_ids = a.mode == "ids" and 100000 or 1000, seek = a.mode ~= "lines",
          print = stream and io.stdout or nil, print_limit = limit }
        if not sc then s:fail(err) return end
        local sources = resolve_sources(a.source)
        local prev_lines, prev_bytes, prev_kept = 0, 0, 0
        local out_sources = {}
        for _, src in ipairs(sources) do
          local ok, rerr
          sc:label(src.kind == "journal" and ("journal:" .. a.unit) or src.path)
          if src.kind == "journal" then
            ok, rerr = read_journal(s, sc, src)
          else
            s:progress("reading " .. (src.path == "-" and "stdin" or src.path))
            ok, rerr = sc:scan_file(src.path)
          end
          if not ok then
            s:finding{ code = "KMS_SOURCE_UNREADABLE", severity = "fail", message = rerr,
                       remediation = "give readable log files, - for stdin, or journal (source=…)" }
            return
          end
          local r = sc:result()
          for i = prev_kept + 1, #r.records do
            r.records[i].source = src.path
            r.records[i].line = r.records[i].line_no - prev_lines
          end
          out_sources[#out_sources + 1] = { path = src.path, kind = src.kind, lines = r.stats.lines - prev_lines,
                                            bytes = r.stats.bytes - prev_bytes }
          s:log(string.format("%s: %d lines, %d bytes", src.path, r.stats.lines - prev_lines, r.stats.bytes - prev_bytes))
          prev_lines, prev_bytes, prev_kept = r.stats.lines, r.stats.bytes, #r.records
        end
        -- result() builds fresh tables each time, except records (kept in the scanner): the source and line set
        -- above remain.
        local res = sc:result()
        res.sources = out_sources
        s.data.res = res
        s:ok(string.format("%d of %d lines matched", res.stats.matched, res.stats.lines))
      end },
    { name = "interpret", timeout = 20,
      run = function(s)
        local res = s.data.res
        if not res then s:skip("nothing was read") end
        local parts, n = {}, 0
        for _, e in ipairs(res.errors) do
          n = n + e.count
          parts[#parts + 1] = e.code .. " " .. e.count
        end
        s:ok(string.format("%d events matched, %d errors%s", res.stats.matched, n,
          n > 0 and (": " .. table.concat(parts, ", ")) or ""))
        for _, f in ipairs(diagnose.kms_logs(res, { unit = s.args.unit })) do s:finding(f) end
        finish_summary(s, res)
        rendered = render(s, res)
      end },
  },
  report = function(result)
    return rendered
  end,
}
