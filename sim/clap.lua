-- clap 4's command-line parsing for the simulated nitro-cli: nitro-cli's own argument definitions (create_app! in
-- src/lib.rs of aws-nitro-enclaves-cli, identical in v1.4.2 and v1.5.0) and the parts of clap_builder's parser,
-- validator and error formatter they reach (parser/parser.rs, parser/validator.rs, output/usage.rs,
-- error/format.rs, parser/features/suggestions.rs). nitro-cli 1.4.2 pins clap 4.4.18 with strsim 0.10, 1.5.0
-- clap 4.5.51 with strsim 0.11; they print the same texts except which subcommands a typo suggests (the two strsim
-- versions compute jaro differently). Help texts are clap's own rendering, kept in nd.sim.clap_help.
-- tests/fixtures/nitro-cli-source/clap*.lua hold what real clap prints for each case (clap-oracle/gen.sh builds clap
-- on nitro-cli's definitions); tests/sim/clap_spec.lua compares this module with them.
local M = {}

local function a(id, kind, t)
  t = t or {}
  t.id, t.kind, t.long = id, kind, t.long or id
  t.value_name = t.value_name or id
  return t
end

-- create_app! (src/lib.rs), subcommands and arguments in definition order
local SUBS = {
  { name = "run-enclave", args = {
    a("cpu-ids", "list", { r_unless = { "cpu-count", "config" }, conflicts = { "cpu-count", "config" } }),
    a("cpu-count", "value", { r_unless = { "cpu-ids", "config" }, conflicts = { "cpu-ids", "config" } }),
    a("memory", "value", { r_unless = { "config" }, conflicts = { "config" } }),
    a("eif-path", "value", { r_unless = { "config" }, conflicts = { "config" } }),
    a("enclave-cid", "value", { conflicts = { "config" } }),
    a("debug-mode", "flag", { conflicts = { "config" } }),
    a("attach-console", "flag"),
    a("enclave-name", "value", { conflicts = { "config" } }),
    a("config", "value", { value_name = "json-config" }),
  } },
  { name = "terminate-enclave", args = {
    a("enclave-id", "value", { r_unless = { "all", "enclave-name" }, conflicts = { "all", "enclave-name" } }),
    a("all", "flag", { r_unless = { "enclave-id", "enclave-name" }, conflicts = { "enclave-id", "enclave-name" } }),
    a("enclave-name", "value", { r_unless = { "enclave-id", "all" }, conflicts = { "enclave-id", "all" } }),
  } },
  { name = "build-enclave", args = {
    a("docker-uri", "value", { required = true }),
    a("docker-dir", "value"),
    a("output-file", "value", { required = true }),
    a("signing-certificate", "value", { requires = { "private-key" } }),
    a("private-key", "value", { requires = { "signing-certificate" } }),
    a("image_name", "value", { long = "name" }),
    a("image_version", "value", { long = "version" }),
    a("metadata", "value"),
  } },
  { name = "describe-eif", args = { a("eif-path", "value", { required = true }) } },
  { name = "describe-enclaves", args = { a("metadata", "flag") } },
  { name = "console", args = {
    a("enclave-id", "value", { r_unless = { "enclave-name" }, conflicts = { "enclave-name" } }),
    a("disconnect-timeout", "value"),
    a("enclave-name", "value", { r_unless = { "enclave-id" }, conflicts = { "enclave-id" } }),
  } },
  { name = "pcr", args = {
    a("signing-certificate", "value", { r_unless = { "input" }, conflicts = { "input" } }),
    a("input", "value", { r_unless = { "signing-certificate" }, conflicts = { "signing-certificate" } }),
  } },
  { name = "explain", args = { a("error-code", "value", { required = true }) } },
  { name = "sign-eif", args = {
    a("eif-path", "value"),
    a("signing-certificate", "value", { requires = { "private-key" } }),
    a("private-key", "value", { requires = { "signing-certificate" } }),
  } },
}
for _, s in ipairs(SUBS) do
  s.by_id, s.by_long = {}, {}
  s.args[#s.args + 1] = a("help", "help", { long = "help" }) -- clap's generated -h/--help, last
  for _, x in ipairs(s.args) do s.by_id[x.id] = x s.by_long[x.long] = x end
end
local SUB = {}
for _, s in ipairs(SUBS) do SUB[s.name] = s end
M.SUBS = SUBS

local function contains(t, v)
  for _, x in ipairs(t or {}) do if x == v then return true end end
  return false
end

-- strsim's jaro: 0.11 (clap 4.5.51) and 0.10 (clap 4.4.18) differ in the match window and the transpositions
local function chars(s)
  local t = {}
  for c in s:gmatch(".") do t[#t + 1] = c end
  return t
end
local function jaro_011(s1, s2)
  local a1, b1 = chars(s1), chars(s2)
  local al, bl = #a1, #b1
  if al == 0 and bl == 0 then return 1.0 elseif al == 0 or bl == 0 then return 0.0 end
  local range = math.max(0, math.max(al, bl) // 2 - 1)
  local af, bf, m = {}, {}, 0
  for i = 0, al - 1 do
    local lo = i > range and i - range or 0
    local hi = math.min(bl, i + range + 1)
    for j = 0, hi - 1 do
      if lo <= j and a1[i + 1] == b1[j + 1] and not bf[j] then af[i], bf[j], m = true, true, m + 1 break end
    end
  end
  if m == 0 then return 0.0 end
  local t, j = 0, 0
  for i = 0, al - 1 do
    if af[i] then
      while not bf[j] do j = j + 1 end
      if a1[i + 1] ~= b1[j + 1] then t = t + 1 end
      j = j + 1
    end
  end
  t = t // 2
  return (m / al + m / bl + (m - t) / m) / 3.0
end
local function jaro_010(s1, s2)
  local a1, b1 = chars(s1), chars(s2)
  local al, bl = #a1, #b1
  if al == 0 and bl == 0 then return 1.0 elseif al == 0 or bl == 0 then return 0.0
  elseif al == 1 and bl == 1 then return a1[1] == b1[1] and 1.0 or 0.0 end
  local range = math.max(al, bl) // 2 - 1
  local used, m, t, last = {}, 0, 0, 0
  for i = 0, al - 1 do
    local lo = i > range and i - range or 0
    local hi = math.min(bl - 1, i + range)
    if lo <= hi then
      for j = 0, bl - 1 do
        if lo <= j and j <= hi and a1[i + 1] == b1[j + 1] and not used[j] then
          used[j], m = true, m + 1
          if j < last then t = t + 1 end
          last = j
          break
        end
      end
    end
  end
  if m == 0 then return 0.0 end
  return (1.0 / 3.0) * (m / al + m / bl + (m - t) / m)
end
M.jaro_011, M.jaro_010 = jaro_011, jaro_010

-- suggestions::did_you_mean: candidates above 0.7, ascending (stable), most similar last
local function did_you_mean(self, v, names)
  local jaro = self.old and jaro_010 or jaro_011
  local c = {}
  for i, n in ipairs(names) do
    local conf = jaro(v, n)
    if conf > 0.7 then c[#c + 1] = { conf, i, n } end
  end
  table.sort(c, function(x, y) if x[1] ~= y[1] then return x[1] < y[1] end return x[2] < y[2] end)
  local out = {}
  for _, x in ipairs(c) do out[#out + 1] = x[3] end
  return out
end

local function shown(arg)
  if arg.kind == "flag" or arg.kind == "help" then return "--" .. arg.long end
  return "--" .. arg.long .. " <" .. arg.value_name .. ">" .. (arg.kind == "list" and "..." or "")
end
M.shown = function(sub, id) return shown(SUB[sub].by_id[id]) end

-- Command::unroll_arg_requires
local function unroll_requires(s, id)
  local processed, stack, out = {}, { id }, {}
  while #stack > 0 do
    local x = table.remove(stack)
    if not processed[x] then
      processed[x] = true
      for _, r in ipairs(s.by_id[x].requires or {}) do
        if s.by_id[r].requires then stack[#stack + 1] = r end
        out[#out + 1] = r
      end
    end
  end
  return out
end

local function required_graph(s)
  local g = {}
  for _, x in ipairs(s.args) do if x.required then g[#g + 1] = x.id end end
  return g
end

-- Usage::get_required_usage_from (as rendered strings, deduplicated, first occurrence kept)
local function required_usage(s, required, incls, present)
  local seen, out = {}, {}
  local function add(id)
    if present and present[id] then return end
    local t = shown(s.by_id[id])
    if not seen[t] then seen[t] = true out[#out + 1] = t end
  end
  for _, r in ipairs(required) do
    for _, x in ipairs(unroll_requires(s, r)) do add(x) end
    add(r)
  end
  for _, id in ipairs(incls) do add(id) end
  return out
end

-- create_usage_with_title(&[]) (the help usage) and create_usage_with_title(used) (the "smart" usage)
local function help_usage(s)
  local opts = false
  for _, x in ipairs(s.args) do if not x.required and x.kind ~= "help" then opts = true end end
  local req = required_usage(s, required_graph(s), {})
  return "nitro-cli " .. s.name .. (opts and " [OPTIONS]" or "") .. (#req > 0 and (" " .. table.concat(req, " ")) or "")
end
local function usage_for(s, required, used)
  if #used == 0 then return help_usage(s) end
  return "nitro-cli " .. s.name .. " " .. table.concat(required_usage(s, required, used), " ")
end

local function err(msg, tip, usage)
  return { stream = "stderr", exit = 2, text = "error: " .. msg .. (tip and ("\n\n  tip: " .. tip) or "")
    .. (usage and ("\n\nUsage: " .. usage) or "") .. "\n\nFor more information, try '--help'.\n" }
end

local TOP_USAGE = "nitro-cli [COMMAND]"
local NAMES = {}
for _, s in ipairs(SUBS) do NAMES[#NAMES + 1] = s.name end
NAMES[#NAMES + 1] = "help"

local function unrecognized(self, word, usage)
  local c = did_you_mean(self, word, NAMES)
  local tip
  if #c == 1 then tip = "a similar subcommand exists: '" .. c[1] .. "'"
  elseif #c > 1 then tip = "some similar subcommands exist: '" .. table.concat(c, "', '") .. "'" end
  return err("unrecognized subcommand '" .. word .. "'", tip, usage)
end

local function help_of(name)
  return { stream = "stdout", exit = 0, text = require("nd.sim.clap_help")[name or ""] }
end

-- the validator: conflicts (in the order the arguments were given), then required arguments
local function validate(s, m)
  for _, id in ipairs(m.order) do
    local mine, conf = s.by_id[id].conflicts or {}, {}
    for _, o in ipairs(m.order) do
      if o ~= id and (contains(mine, o) or contains(s.by_id[o].conflicts, id)) and not contains(conf, o) then
        conf[#conf + 1] = o
      end
    end
    if #conf > 0 then
      local msg = "the argument '" .. shown(s.by_id[id]) .. "' cannot be used with"
      if #conf == 1 then msg = msg .. " '" .. shown(s.by_id[conf[1]]) .. "'"
      else
        msg = msg .. ":"
        for _, o in ipairs(conf) do msg = msg .. "\n  " .. shown(s.by_id[o]) end
      end
      local used = {}
      for _, o in ipairs(m.order) do if not contains(conf, o) then used[#used + 1] = o end end
      local req = {}
      for _, u in ipairs(used) do
        for _, r in ipairs(s.by_id[u].requires or {}) do
          if not contains(used, r) and not contains(conf, r) then req[#req + 1] = r end
        end
      end
      for _, u in ipairs(used) do req[#req + 1] = u end
      return err(msg, nil, usage_for(s, required_graph(s), req))
    end
  end
  -- gather_requires: the required graph plus what present arguments require
  local required = required_graph(s)
  for _, id in ipairs(m.order) do
    for _, r in ipairs(unroll_requires(s, id)) do if not contains(required, r) then required[#required + 1] = r end end
  end
  local missing = {}
  for _, r in ipairs(required) do if not m.present[r] then missing[#missing + 1] = r end end
  for _, x in ipairs(s.args) do
    if not m.present[x.id] and x.r_unless then
      local any = false
      for _, o in ipairs(x.r_unless) do if m.present[o] then any = true end end
      if not any then missing[#missing + 1] = x.id end
    end
  end
  if #missing > 0 then
    local list = required_usage(s, required, missing, m.present)
    local used = {}
    for _, id in ipairs(m.order) do used[#used + 1] = id end
    for _, id in ipairs(missing) do used[#used + 1] = id end
    return err("the following required arguments were not provided:\n  " .. table.concat(list, "\n  "), nil,
      usage_for(s, required, used))
  end
end

-- one subcommand's arguments
local function parse_sub(self, s, args, i)
  local m = { order = {}, present = {}, values = {} }
  local pending, pending_n, pending_again -- an option waiting for its value(s)
  local function start(arg)
    if not m.present[arg.id] then m.present[arg.id] = true m.order[#m.order + 1] = arg.id end
  end
  local function resolve()
    if pending and pending_n == 0 then
      return err("a value is required for '" .. shown(pending) .. "' but none was supplied")
    end
    pending = nil
  end
  local function again(arg)
    return err("the argument '" .. shown(arg) .. "' cannot be used multiple times", nil, help_usage(s))
  end
  local dashdash = false
  while i <= #args do
    local w = args[i]
    if not dashdash and w == "--" then
      local e = resolve() if e then return e end
      dashdash = true
    elseif not dashdash and w:match("^%-%-.") then
      local long, inline = w:match("^%-%-([^=]*)=(.*)$")
      long = long or w:sub(3)
      local arg = s.by_long[long]
      if not arg then
        local longs = {}
        for _, x in ipairs(s.args) do longs[#longs + 1] = x.long end
        local sug = did_you_mean(self, long, longs)
        local tip
        if #sug > 0 then
          tip = "a similar argument exists: '--" .. sug[#sug] .. "'"
          for _, x in ipairs(s.args) do if x.long == sug[#sug] then start(x) end end
        end
        return err("unexpected argument '" .. w .. "' found", tip, usage_for(s, required_graph(s), m.order))
      end
      local e = resolve() if e then return e end
      if arg.kind == "help" then return help_of(s.name) end
      if arg.kind == "flag" then
        if inline then
          start(arg)
          return err("unexpected value '" .. inline .. "' for '" .. shown(arg) .. "' found; no more were expected", nil,
            usage_for(s, required_graph(s), m.order))
        end
        if m.present[arg.id] then return again(arg) end
        start(arg)
        m.values[arg.id] = { true }
      elseif inline then
        if m.values[arg.id] then return again(arg) end
        m.values[arg.id] = { inline }
        start(arg)
      else
        start(arg)
        pending, pending_n, pending_again = arg, 0, m.values[arg.id] ~= nil
      end
    elseif not dashdash and w:match("^%-.") then
      if w == "-h" then
        local e = resolve() if e then return e end
        return help_of(s.name)
      end
      return err("unexpected argument '" .. w .. "' found", nil, help_usage(s))
    elseif pending and not dashdash then
      if pending_again then return again(pending) end
      m.values[pending.id] = m.values[pending.id] or {}
      table.insert(m.values[pending.id], w)
      pending_n = pending_n + 1
      if pending.kind ~= "list" then pending = nil end
    else
      return err("unexpected argument '" .. w .. "' found", nil, help_usage(s))
    end
    i = i + 1
  end
  local e = resolve() if e then return e end
  e = validate(s, m)
  if e then return e end
  local o = {}
  for id, v in pairs(m.values) do
    local arg = s.by_id[id]
    if arg.kind == "flag" then o[id] = true
    elseif arg.kind == "list" then o[id] = { table.unpack(v) }
    else o[id] = v[1] end
  end
  return { sub = s.name, opts = o }
end

-- parse(args, version) -> { sub = name, opts = { [id] = value | true | {values} } }
--   | { stream = "stdout"|"stderr", exit = n, text = s } (what clap prints, text ends with a newline).
-- args excludes argv[0]; version is the nitro-cli version ("1.4.2" selects clap 4.4.18's suggestions).
function M.parse(args, version)
  local self = { old = tostring(version or ""):match("^1%.4%.") ~= nil, version = version or "1.5.0" }
  local i = 1
  while i <= #args do
    local w = args[i]
    if w == "--help" or w == "-h" then return help_of(nil) end
    if w == "--version" or w == "-V" then
      return { stream = "stdout", exit = 0, text = "Nitro CLI " .. self.version .. "\n" }
    end
    if w:match("^%-%-.") then
      local long = w:match("^%-%-([^=]*)") or ""
      local sug = did_you_mean(self, long, { "help", "version" })
      local tip
      if #sug > 0 then tip = "a similar argument exists: '--" .. sug[#sug] .. "'"
      else
        local best -- did_you_mean_flag: a subcommand named later on the line that has such an argument
        for _, s in ipairs(SUBS) do
          local longs = {}
          for _, x in ipairs(s.args) do longs[#longs + 1] = x.long end
          local c = did_you_mean(self, long, longs)
          if #c > 0 then
            for k = i + 1, #args do
              if args[k] == s.name and (not best or k - i - 1 < best[1]) then best = { k - i - 1, s.name, c[#c] } end
            end
          end
        end
        if best then tip = "'" .. best[2] .. " --" .. best[3] .. "' exists" end
      end
      return err("unexpected argument '" .. w .. "' found", tip, TOP_USAGE)
    elseif w:match("^%-.") then
      return err("unexpected argument '" .. w .. "' found", nil, TOP_USAGE)
    elseif w == "help" then
      local name = args[i + 1]
      if not name then return help_of(nil) end
      if name == "help" then return help_of("help") end
      local s = SUB[name]
      if not s then return unrecognized(self, name, TOP_USAGE) end
      if args[i + 2] then return unrecognized(self, args[i + 2], help_usage(s)) end
      return help_of(name)
    end
    local s = SUB[w]
    if not s then return unrecognized(self, w, TOP_USAGE) end
    return parse_sub(self, s, args, i + 1)
  end
  -- arg_required_else_help: the help, on stderr, exit 2
  local h = help_of(nil)
  h.stream, h.exit = "stderr", 2
  return h
end

return M
