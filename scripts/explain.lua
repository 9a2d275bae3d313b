-- scripts/explain.lua — `nitrodiag explain E26 | 26 | FILE | -`: explains a nitro-cli error code, or finds the error
-- blocks in pasted nitro-cli output (a file, or stdin with -) and explains the ROOT cause with the numbers from the
-- text (E26: the requested and the minimum memory; E27: the request against allocator.yaml; E19: the file and the
-- operation …). The cause comes from the cause rules and the registry (nd.diagnose, nd.findings), the code's text from
-- nd.nitro_errors, parsing from nd.nitro. E57–E59 (which `nitro-cli explain` does not know) and codes nitro-cli never
-- had are answered honestly.
local kb = require "nd.nitro_errors"
local nitro = require "nd.nitro"
local diagnose = require "nd.diagnose"
local fs = require "nd.fs"

local text = {} -- the human report, built by the step

local function add(...)
  for i = 1, select("#", ...) do
    local l = select(i, ...)
    if l then text[#text + 1] = l end
  end
end

-- Wraps s at width; the first line starts with indent, the others with rest (default: indent).
local function wrap(s, indent, rest, width)
  rest = rest or indent
  width = width or 100
  local out, line, pre = {}, indent, indent
  for word in s:gmatch("%S+") do
    if #line + #word + 1 > width and #line > #pre then
      out[#out + 1] = line
      line, pre = rest .. word, rest
    else
      line = (#line > #pre) and (line .. " " .. word) or (line .. word)
    end
  end
  if #line > #pre then out[#out + 1] = line end
  return table.concat(out, "\n")
end

-- The knowledge-base part of an answer: meaning, causes, remediation, flags, the docs and nitro-cli's own words.
local function describe(e)
  add(string.format("%s  %s", e.code, e.title), "")
  add(wrap(e.meaning, "  "))
  if e.retired then add("", "  Note: current nitro-cli no longer raises " .. e.code .. "; driver failures surface as E29.") end
  if #e.causes > 0 then
    add("", "  Usual causes:")
    for _, c in ipairs(e.causes) do add(wrap(c, "    - ", "      ")) end
  end
  if #e.remediation > 0 then
    add("", "  What to do:")
    for _, r in ipairs(e.remediation) do add(wrap(r, "    - ", "      ")) end
  end
  if #e.related > 0 then add("", "  Related: " .. table.concat(e.related, ", ")) end
  add("", "  Documentation: " .. e.doc_url)
  if e.explain_unknown then
    add("  `nitro-cli explain --error-code " .. e.code .. "` does not know this code: it prints \"No such error code "
      .. e.code .. "\".")
  elseif e.explain then
    add("  `nitro-cli explain --error-code " .. e.code .. "` says:")
    for l in (e.explain .. "\n"):gmatch("(.-)\n") do add(wrap((l:gsub("\t", "  ")), "    | ")) end
  end
end

-- The best cause the rules find in the text, rendered; returns the diagnose result.
local function cause_section(raw)
  local res = diagnose.run(raw)
  local top = res.top
  if not top then return res end
  add(string.format("Most likely cause: %s  [%s]", top.title, top.code))
  add(wrap(top.message, "  "))
  for _, e in ipairs(top.evidence or {}) do add(wrap(e, "    > ", "      ")) end
  if #top.remediation_list > 0 then
    add("  Fix:")
    for _, r in ipairs(top.remediation_list) do add(wrap(r, "    - ", "      ")) end
  end
  for i = 2, math.min(#res.causes, 3) do
    local c = res.causes[i]
    if c.confidence >= 0.5 then add("  Also possible: " .. c.title .. " [" .. c.code .. "]") end
  end
  add("")
  return res
end

local function code_mode(s, input)
  local code = kb.normalize(input)
  local e = kb.get(code)
  if not e then
    -- a code nitro-cli does not have is a usage error (exit 2), like any other bad argument
    s:usage(string.format("%s is not a nitro-cli error code (nitro-cli's codes are E00–E60; `nitro-cli explain " ..
      "--error-code %s` prints: %s): check the number in `[ Exx ]`, or paste the output with `nitrodiag explain -`",
      code, code, kb.explain_text(code)))
  end
  describe(e)
  s:finding{ code = e.code, severity = "info", message = e.code .. " " .. e.title .. ": " .. e.meaning,
             remediation = e.remediation[1] }
  s:ok(e.code .. " " .. e.title)
end

-- Specific advice with the numbers from the block. Returns the explanation lines and a one-line remediation.
local function specifics(b)
  local f = b.facts or {}
  local lines, fix = {}, nil
  if b.code == "E26" and f.min_memory_mib then
    local lo, hi = (f.min_memory_mib // 4) - 1, f.min_memory_mib // 4
    lines[#lines + 1] = string.format("run-enclave asked for --memory %d MiB, but this EIF needs at least %d MiB: "
      .. "4 × the EIF file size, reported as ceil(size / 1 MiB) × 4 — so the EIF is between %d and %d MiB.",
      f.memory_mib or 0, f.min_memory_mib, math.max(lo, 0), hi)
    lines[#lines + 1] = string.format("Run with --memory %d or more, and check that memory_mib in "
      .. "/etc/nitro_enclaves/allocator.yaml is at least %d (otherwise E27 comes next).", f.min_memory_mib, f.min_memory_mib)
    fix = string.format("nitro-cli run-enclave … --memory %d (or more); allocator memory_mib >= %d", f.min_memory_mib,
      f.min_memory_mib)
  elseif b.code == "E26" and f.memory_mib == 0 then
    lines[#lines + 1] = "run-enclave was given --memory 0; the value is in MiB and must cover 4 × the EIF size."
    fix = "pass --memory with at least the minimum `nitrodiag eif <file>` prints"
  elseif b.code == "E27" and f.memory_mib then
    lines[#lines + 1] = string.format("run-enclave asked for %d MiB, more than the hugepage memory the allocator "
      .. "reserved (memory_mib in /etc/nitro_enclaves/allocator.yaml, minus what running enclaves hold).", f.memory_mib)
    lines[#lines + 1] = string.format("Raise memory_mib to at least %d: sudo systemctl stop nitro-enclaves-allocator.service; "
      .. "set memory_mib: %d; sudo systemctl start nitro-enclaves-allocator.service && sudo systemctl enable "
      .. "nitro-enclaves-allocator.service — or ask for less memory (not below the EIF's E26 minimum).", f.memory_mib, f.memory_mib)
    fix = string.format("set memory_mib: %d (or more) in /etc/nitro_enclaves/allocator.yaml and restart "
      .. "nitro-enclaves-allocator.service", f.memory_mib)
  elseif b.code == "E22" and f.cpu_count then
    lines[#lines + 1] = string.format("run-enclave asked for %d CPUs; the enclave CPU pool (ne_cpus) has fewer. nitro-cli "
      .. "compares the request with the pool's size only: CPUs held by another enclave give E29, not E22.", f.cpu_count)
    fix = string.format("raise cpu_count to %d in allocator.yaml and restart the allocator (or ask for fewer CPUs)",
      f.cpu_count)
  elseif b.code == "E21" and f.cpu_id then
    lines[#lines + 1] = string.format("CPU %d is not in the enclave CPU pool (cat /sys/module/nitro_enclaves/parameters/ne_cpus).",
      f.cpu_id)
    fix = string.format("add CPU %d to cpu_pool in allocator.yaml (with its sibling) and restart the allocator", f.cpu_id)
  elseif b.code == "E19" and f.file then
    local file, op = tostring(f.file), tostring(f.operation or "?")
    lines[#lines + 1] = string.format("The failing file is %s (operation %s).", file, op)
    if file == "/dev/nitro_enclaves" then
      lines[#lines + 1] = "The Nitro Enclaves device: the driver is not loaded (lsmod | grep nitro_enclaves), the "
        .. "instance was launched without enclave support, or this user is not in group ne."
      fix = "sudo modprobe nitro_enclaves; sudo usermod -aG ne $USER and log in again; launch with enclaves enabled"
    elseif file:match("ne_cpus") then
      lines[#lines + 1] = "The driver's CPU pool parameter: the nitro_enclaves driver is not loaded."
      fix = "sudo modprobe nitro_enclaves, then restart nitro-enclaves-allocator.service"
    elseif file:match("%.eif$") then
      fix = "check the EIF path and permissions: ls -l " .. file
    end
  elseif b.code == "E36" and f.boot_error then
    lines[#lines + 1] = "Boot error: " .. f.boot_error .. " — the enclave did not send its heartbeat in time."
  elseif b.code == "E29" and f.driver_error then
    lines[#lines + 1] = "The driver said: " .. (f.driver_message or f.driver_error) .. "."
  end
  return lines, fix
end

local function text_mode(s, raw, source)
  local parsed = nitro.parse_errors(raw)
  if not parsed.recognised then
    local log = nitro.parse_err_log(raw)
    if log.recognised then
      add("This is a nitro-cli err log (" .. source .. "):", "  Action: " .. log.action)
      for _, sa in ipairs(log.subactions) do add("    " .. sa) end
      if log.root_file then add(string.format("  Root error: %s:%s", log.root_file, tostring(log.root_line or "?"))) end
      if log.version then add("  nitro-cli version: " .. log.version) end
      add("", "An err log has no error code: explain the `[ Exx ]` block nitro-cli printed with it.", "")
      local res = cause_section(raw)
      if res.top then
        s:finding{ code = res.top.code, severity = "warn", message = "nitro-cli err log (" .. tostring(log.action) .. "): " .. res.top.title,
                   evidence = res.top.evidence, remediation = res.top.remediation }
      else
        s:finding{ code = "ERR_LOG", severity = "info", message = "nitro-cli err log: " .. tostring(log.action) }
      end
      return
    end
    add("No nitro-cli error block (`[ Exx ] …`) found in " .. source .. " (" .. #raw .. " bytes).")
    local res = diagnose.run(raw)
    if res.top then
      add("")
      cause_section(raw)
      s:finding{ code = res.top.code, severity = res.top.severity == "fail" and "warn" or res.top.severity,
                 message = res.top.title .. ": " .. res.top.message, evidence = res.top.evidence, remediation = res.top.remediation }
      return
    end
    local first = raw:match("^%s*([^\n]*)")
    if first and first ~= "" then add("It starts with: " .. first:sub(1, 200)) end
    s:finding{ code = "NO_ERROR_BLOCK", severity = "warn", message = parsed.reason,
               evidence = { (first or ""):sub(1, 200) },
               remediation = "paste nitro-cli's stderr (2>&1), or give the code: nitrodiag explain E26" }
    return
  end
  local root = parsed.root
  add(string.format("Found %d error block%s in %s; the root cause is the first one:", #parsed.blocks,
    #parsed.blocks == 1 and "" or "s", source), "")
  add("  " .. root.headline)
  for _, d in ipairs(root.details) do add("  " .. d) end
  add("")
  local lines, fix = specifics(root)
  for _, l in ipairs(lines) do add(wrap(l, "  ")) end
  if #lines > 0 then add("") end
  local res = cause_section(raw)
  if root.err_log_path then
    add("  Error log: " .. root.err_log_path)
    local log = nitro.read_err_log(root.err_log_path)
    if log and log.recognised then
      add("    Action: " .. log.action)
      for _, sa in ipairs(log.subactions) do add("      " .. sa) end
      if log.root_file then add(string.format("    Root error: %s:%s", log.root_file, tostring(log.root_line or "?"))) end
    end
    add("")
  end
  local e = kb.get(root.code)
  if e then
    describe(e)
  else
    add(root.code .. " is not a code nitro-cli defines (E00–E60): nitro-cli's explain would print \"No such error code "
      .. root.code .. "\".")
  end
  local evidence = { root.headline }
  for _, d in ipairs(root.details) do evidence[#evidence + 1] = d end
  if root.err_log_path then evidence[#evidence + 1] = "err log: " .. root.err_log_path end
  local top = res.top
  s:finding{ code = top and top.code or root.code, severity = "warn",
             message = "root cause: " .. root.headline .. (top and (" — " .. top.title) or ""),
             evidence = evidence, remediation = fix or (top and top.remediation) or (e and e.remediation[1]) }
  for i = 2, #parsed.blocks do
    local b = parsed.blocks[i]
    add("")
    if b.secondary then
      add(wrap(string.format("Then %s (%s)%s: a consequence, not a cause — the enclave process exited after %s, so "
        .. "nitro-cli could not reach it.", b.code, b.title,
        parsed.failed_connections and string.format(" after `Failed connections: %d`", parsed.failed_connections) or "",
        root.code), ""))
    else
      add(string.format("Also: %s", b.headline))
    end
    s:finding{ code = b.code, severity = "info", message = (b.secondary and "secondary: " or "also: ") .. b.headline }
  end
  s:ok("root cause " .. root.code .. " " .. root.title)
end

return {
  name = "explain",
  description = "Explain a nitro-cli error code (E26, 26) or the root cause in pasted nitro-cli output (file or -)",
  categories = { "triage", "nitro-cli" },
  args = {
    { name = "input", type = "string", positional = 1, required = true,
      help = "an error code (E26 or 26), a file with nitro-cli output, or - to read it from stdin" },
  },
  deadline = 30,
  steps = {
    { name = "explain", timeout = 20, required = true,
      run = function(s)
        local input = s.args.input
        if input:match("^%s*[Ee]?%d+%s*$") then return code_mode(s, input) end
        local raw, err
        if input == "-" then
          raw = io.stdin:read("a")
          if not raw then err = "cannot read stdin" end
        else
          raw, err = fs.read(input)
          if not raw and not input:find("[/.]") then
            err = string.format("%q is neither an error code (E26, 26) nor a readable file: %s", input, tostring(err))
          end
        end
        if not raw then
          s:usage(tostring(err) .. ": give an error code (nitrodiag explain E26), a file, or - and paste the output")
        end
        if not raw:match("%S") then
          s:usage((input == "-" and "stdin" or input) .. " is empty: nothing to explain (paste nitro-cli's output, " ..
            "or give the code: nitrodiag explain E26)")
        end
        text_mode(s, raw, input == "-" and "stdin" or input)
      end },
  },
  report = function() return #text > 0 and table.concat(text, "\n") or nil end,
}
