-- nd.report — report.md and summary.json from a runbook result (the object nd.runbook.execute returns and --json
-- prints). nd.bundle's finish()/abort() call render(); runbooks and tools may call markdown()/summary() directly.
--
--   local md, summary = report.render(result, { interrupted = false, artifacts = b:entries() })
--
-- The Markdown reads well both raw in a terminal (short lines, aligned pipes, no HTML) and rendered on GitHub:
-- a header table, the interruption banner, findings with evidence in fenced blocks and the remediation, the step
-- table with durations, and the collection: every artifact that is not ok or was truncated, and the redactions.
local M = {}

-- Text of a value; nil and JSON null (cjson.null, a userdata) are "".
local function s(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" or t == "boolean" then return tostring(v) end
  return ""
end

-- A table cell: one line, pipes escaped.
local function cell(v)
  return (s(v):gsub("[\r\n]+", " "):gsub("|", "\\|"))
end

local function dur(d)
  d = tonumber(d)
  if not d then return "" end
  if d < 1 then return string.format("%.0f ms", d * 1000) end
  if d < 120 then return string.format("%.1f s", d) end
  return string.format("%dm%02ds", math.floor(d / 60), math.floor(d % 60))
end

local function args_line(args)
  if type(args) ~= "table" then return "" end
  local keys = {}
  for k in pairs(args) do if type(k) == "string" then keys[#keys + 1] = k end end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = args[k]
    if type(v) == "table" then
      local parts = {}
      for _, x in ipairs(v) do parts[#parts + 1] = tostring(x) end
      v = table.concat(parts, ",")
    end
    out[#out + 1] = k .. "=" .. tostring(v)
  end
  return table.concat(out, " ")
end

local function list(t) if type(t) == "table" then return t end return {} end

-- Tables stay within this many columns, so report.md reads in a terminal as well as rendered: a longer cell is cut
-- with "…" and given in full after the table.
M.TABLE_WIDTH = 100

local function cut(text, n)
  if (utf8.len(text) or #text) <= n then return text end
  local stop = utf8.offset(text, n) or (n + 1)
  return text:sub(1, stop - 1):gsub("%s+$", "") .. "…"
end

-- Words of text joined into lines of at most n columns (for long values outside tables).
local function wrap_words(text, n)
  local out, cur = {}, nil
  for w in text:gmatch("%S+") do
    if cur and (utf8.len(cur .. " " .. w) or #cur) > n then out[#out + 1] = cur cur = w
    else cur = cur and (cur .. " " .. w) or w end
  end
  out[#out + 1] = cur or ""
  return out
end

-- Markdown table with aligned columns (so it also reads raw). aligns: "l" | "r" per column.
local function md_table(headers, rows, aligns)
  local w = {}
  for i, h in ipairs(headers) do w[i] = math.max(3, #h) end
  for _, r in ipairs(rows) do
    for i = 1, #headers do
      r[i] = cell(r[i])
      if utf8.len(r[i]) and utf8.len(r[i]) > w[i] then w[i] = utf8.len(r[i]) end
    end
  end
  local function pad(v, i)
    local n = (utf8.len(v) or #v)
    local fill = string.rep(" ", math.max(0, w[i] - n))
    if aligns and aligns[i] == "r" then return fill .. v end
    return v .. fill
  end
  local out = {}
  local hdr, sep = {}, {}
  for i, h in ipairs(headers) do
    hdr[i] = pad(h, i)
    local dashes = string.rep("-", math.max(3, w[i]))
    if aligns and aligns[i] == "r" then dashes = dashes:sub(2) .. ":" end
    sep[i] = dashes
  end
  out[#out + 1] = "| " .. table.concat(hdr, " | ") .. " |"
  out[#out + 1] = "| " .. table.concat(sep, " | ") .. " |"
  for _, r in ipairs(rows) do
    local c = {}
    for i = 1, #headers do c[i] = pad(r[i], i) end
    out[#out + 1] = "| " .. table.concat(c, " | ") .. " |"
  end
  return table.concat(out, "\n")
end

-- Collection statistics from manifest entries.
local function collection(artifacts)
  local st = { total = 0, by_status = {}, problems = {}, truncated = {}, redactions = {}, redactions_total = 0 }
  for _, a in ipairs(list(artifacts)) do
    st.total = st.total + 1
    local status = a.status or "error"
    st.by_status[status] = (st.by_status[status] or 0) + 1
    if status ~= "ok" then st.problems[#st.problems + 1] = a end
    if a.truncated == true then st.truncated[#st.truncated + 1] = a end
    if type(a.redactions) == "table" then
      for rule, n in pairs(a.redactions) do
        st.redactions[rule] = (st.redactions[rule] or 0) + n
        st.redactions_total = st.redactions_total + n
      end
    end
  end
  return st
end

-- summary(result, info) -> table for summary.json: the result without the step logs (they are steps/*.log),
-- plus the collection counts.
function M.summary(result, info)
  info = info or {}
  result = result or {}
  local steps = {}
  for i, st in ipairs(list(result.steps)) do
    steps[i] = { name = st.name, outcome = st.outcome, message = st.message, started_at = st.started_at,
                 duration = st.duration, findings = st.findings, error = st.error,
                 log_lines = type(st.log) == "table" and #st.log or 0 }
  end
  local c = collection(info.artifacts)
  local by_status = {}
  for k, v in pairs(c.by_status) do by_status[k] = v end
  return {
    runbook = result.runbook, version = result.version, host = result.host,
    started_at = result.started_at, ended_at = result.ended_at, duration = result.duration,
    verdict = result.verdict, exit_code = result.exit_code, args = result.args, sim = result.sim,
    interrupted = (info.interrupted or result.interrupted) and true or false,
    interrupt_reason = info.interrupt_reason or result.interrupt_reason,
    deadline_hit = result.deadline_hit,
    findings = result.findings or {}, steps = steps,
    collection = { artifacts = c.total, by_status = by_status, truncated = #c.truncated,
                   redactions = c.redactions_total },
  }
end

-- markdown(result, info) -> string (report.md)
function M.markdown(result, info)
  info = info or {}
  result = result or {}
  local out = {}
  local function add(line) out[#out + 1] = line or "" end
  local verdict = s(result.verdict ~= nil and result.verdict or "unknown"):upper()
  add(string.format("# nitrodiag %s — %s", s(result.runbook or "run"), verdict))
  add()
  local rows = {
    { "Host", result.host }, { "Started", result.started_at }, { "Ended", result.ended_at },
    { "Duration", dur(result.duration) },
    { "Verdict", string.format("**%s**%s", verdict, result.exit_code and (" (exit " .. s(result.exit_code) .. ")") or "") },
  }
  for i = #rows, 1, -1 do if s(rows[i][2]) == "" then table.remove(rows, i) end end
  local a = args_line(result.args)
  if result.sim then rows[#rows + 1] = { "Simulated host", result.sim } end
  if result.version then rows[#rows + 1] = { "nitrodiag", result.version } end
  add(md_table({ "Run", "" }, rows))
  add()
  if a ~= "" then
    add("Arguments:")
    add()
    add("```")
    for _, l in ipairs(wrap_words(a, M.TABLE_WIDTH)) do add(l) end
    add("```")
    add()
  end
  local interrupted = info.interrupted or result.interrupted
  if interrupted then
    add(string.format("> **Interrupted:** %s. This bundle holds what was collected before that; the manifest " ..
      "lists what is missing and why.", s(info.interrupt_reason or result.interrupt_reason or "the run was stopped")))
    add()
  end

  add("## Findings")
  add()
  local findings = list(result.findings)
  if #findings == 0 then
    add("No findings.")
    add()
  end
  for i, f in ipairs(findings) do
    add(string.format("### %d. [%s] %s%s", i, s(f.severity or "info"):upper(), f.code and (s(f.code) .. ": ") or "",
      s(f.message)))
    add()
    if s(f.step) ~= "" then add("Step: `" .. s(f.step) .. "`") add() end
    local ev = f.evidence
    if type(ev) == "string" then ev = { ev } end
    if type(ev) == "table" and #ev > 0 then
      add("Evidence:")
      add()
      add("```")
      for _, l in ipairs(ev) do add((s(l):gsub("```", "'''"))) end
      add("```")
      add()
    end
    if s(f.remediation) ~= "" then
      add("**Remediation:** " .. s(f.remediation))
      add()
    end
  end

  add("## Steps")
  add()
  local srows, long = {}, {}
  local wname = 4
  for _, st in ipairs(list(result.steps)) do wname = math.max(wname, utf8.len(s(st.name)) or #s(st.name)) end
  -- the message column gets what the others leave of TABLE_WIDTH ("| # | Step | Outcome | Duration | Message |")
  local room = math.max(20, M.TABLE_WIDTH - (2 + 3 + 3 + wname + 3 + 7 + 3 + 8 + 3 + 2))
  for i, st in ipairs(list(result.steps)) do
    local msg = (s(st.message):gsub("[\r\n]+", " "))
    local shown = cut(msg, room)
    if shown ~= msg then long[#long + 1] = string.format("%d. %s: %s", i, s(st.name), msg) end
    srows[#srows + 1] = { tostring(i), st.name, st.outcome, dur(st.duration), shown }
  end
  if #srows > 0 then
    add(md_table({ "#", "Step", "Outcome", "Duration", "Message" }, srows, { "r", "l", "l", "r", "l" }))
    if #long > 0 then
      add()
      add("In full:")
      add()
      for _, l in ipairs(long) do add("- " .. l) end
    end
  else
    add("No steps ran.")
  end
  add()
  for _, st in ipairs(list(result.steps)) do
    if s(st.error) ~= "" then
      add("<details><summary>Error in step " .. s(st.name) .. "</summary>")
      add()
      add("```")
      add(s(st.error))
      add("```")
      add()
      add("</details>")
      add()
    end
  end

  if result.report and result.report ~= "" then
    add("## Notes from the runbook")
    add()
    add(s(result.report))
    add()
  end

  local c = collection(info.artifacts)
  add("## Collection")
  add()
  local parts = {}
  for _, k in ipairs({ "ok", "missing", "denied", "timeout", "error", "skipped" }) do
    if c.by_status[k] then parts[#parts + 1] = string.format("%d %s", c.by_status[k], k) end
  end
  add(string.format("%d artifacts%s; %d truncated; %d secrets redacted.", c.total,
    #parts > 0 and (" (" .. table.concat(parts, ", ") .. ")") or "", #c.truncated, c.redactions_total))
  add()
  if #c.problems > 0 or #c.truncated > 0 then
    local rows2 = {}
    for _, it in ipairs(c.problems) do
      rows2[#rows2 + 1] = { s(it.name), s(it.status), cut(s(it.error), 60) }
    end
    for _, it in ipairs(c.truncated) do
      if it.status == "ok" then
        rows2[#rows2 + 1] = { it.name, "truncated", string.format("kept %s of %s bytes (%s)", s(it.bytes),
          s(it.source_bytes), s(it.truncated_reason or "cap")) }
      end
    end
    add(md_table({ "Artifact", "Status", "Detail" }, rows2))
    add()
  end
  if c.redactions_total > 0 then
    local rules = {}
    for k in pairs(c.redactions) do rules[#rules + 1] = k end
    table.sort(rules)
    local rrows = {}
    for _, k in ipairs(rules) do rrows[#rrows + 1] = { k, tostring(c.redactions[k]) } end
    add(md_table({ "Scrub rule", "Redactions" }, rrows, { "l", "r" }))
    add()
  end
  add("Every artifact, with its source, status, size, SHA-256 and timing, is listed in `manifest.json`.")
  return table.concat(out, "\n") .. "\n"
end

-- render(result, info) -> markdown, summary   (what nd.bundle writes as report.md and summary.json)
function M.render(result, info)
  return M.markdown(result, info), M.summary(result, info)
end

return M
