-- nd.cli — the nitrodiag command line: global options, `run`, `list`, `repl`, `spec`, `help`, and any other word
-- resolved to the runbook of that name (the way git resolves external commands). main() returns the exit status:
-- 0 all steps ok or warn, 1 a step failed, 2 usage error, 3 the runbook itself crashed, 4 the deadline was hit.
local host = require "nd.host"
local runbook = require "nd.runbook"
local json = require "nd.json"

local M = {}

M.USAGE = [[
usage: nitrodiag [options] <command> [args]

commands:
  run <runbook|file.lua> [key=value ...]   run a runbook (shipped, on the search path, or a file)
  <runbook> [key=value ...]                the same: `nitrodiag doctor` = `nitrodiag run doctor`
  list                                     every runbook found, its description and which file is used
  repl                                     interactive Lua with the nd.* modules (also: nitrodiag alone, on a tty)
  spec <file_spec.lua ...>                 run Lua specs (describe/it) inside nitrodiag, e.g. for your runbooks
  help [runbook]                           this text, or a runbook's arguments

options (anywhere before `--`):
  --json              one JSON document with the result on stdout, nothing else there
  --out DIR           where bundles are written (default: the current directory)
  --root DIR          read host files under DIR instead of / (like sosreport --sysroot)
  --sim [SCENARIO]    run against the simulated Nitro host (default scenario: healthy), in simulated time
  --sim-realtime      with --sim: keep wall-clock pacing (console windows last as long as on a real host)
  --sign-key FILE     sign the bundle's manifest (HMAC secret or PEM private key; also $NITRODIAG_SIGN_KEY)
  --deadline SECONDS  hard deadline for the whole run (overrides the runbook's)
  -v, --verbose       show step logs and tracebacks
  -q, --quiet         no progress or step lines: the verdict and the warn/fail findings
  --version           print the version
  -h, --help          this text

runbooks are searched in ./, $NITRODIAG_PATH, /etc/nitrodiag/runbooks, then the installed share directory:
the first match wins, so an edited copy overrides the shipped one.

exit status: 0 all steps ok or warn, 1 a step failed, 2 usage error, 3 the runbook crashed, 4 deadline hit]]

-- Set by main() once the options are read: a usage error under --json still prints one JSON document on stdout.
local json_mode = false

-- A usage error: one line on stderr, exit status 2; under --json also {verdict = "error", exit_code = 2, error}.
local function usage_error(msg, code)
  io.stderr:write("nitrodiag: ", msg, "\n")
  code = code or runbook.EXIT.usage
  if json_mode then
    io.stdout:write(json.encode({ verdict = "error", exit_code = code, error = msg }, { indent = 2 }), "\n")
  end
  return code
end

local COMMANDS = { run = true, list = true, repl = true, spec = true, help = true }

local function scenario_names()
  local ok, sim = pcall(require, "nd.sim")
  if not (ok and sim and sim.scenarios) then return nil end
  local names = {}
  for _, s in ipairs(sim.scenarios()) do names[#names + 1] = s.name end
  return names
end

-- What the word after --sim is: "scenario", "command" (a command or runbook: the default scenario applies), or
-- "unknown" (neither: a misspelt scenario, reported as one).
local function sim_word(word)
  local names = scenario_names()
  for _, n in ipairs(names or {}) do if n == word then return "scenario" end end
  if word:find("/") and word:match("%.lua$") and not runbook.looks_like_runbook(word) then return "scenario" end
  if COMMANDS[word] or runbook.find(word) then return "command" end
  return "unknown", names
end

-- parse(args) -> opts, rest | nil, msg
function M.parse(args)
  local opts, rest = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for j = i + 1, #args do rest[#rest + 1] = args[j] end
      break
    elseif a == "--json" then opts.json = true
    elseif a == "-q" or a == "--quiet" then opts.quiet = true
    elseif a == "-v" or a == "--verbose" then opts.verbose = true
    elseif a == "-h" or a == "--help" then opts.help = true
    elseif a == "--version" then opts.version = true
    elseif a == "--out" or a == "--root" or a == "--deadline" or a == "--sign-key" then
      local v = args[i + 1]
      if not v then return nil, a .. " needs a value" end
      opts[a:sub(3):gsub("%-", "_")] = v
      i = i + 1
    elseif a:match("^%-%-out=") or a:match("^%-%-root=") or a:match("^%-%-deadline=") or a:match("^%-%-sim=")
        or a:match("^%-%-sign%-key=") then
      local k, v = a:match("^%-%-([%w%-]+)=(.*)$")
      opts[k:gsub("%-", "_")] = v
    elseif a == "--sim-realtime" then
      require("nd.sim").default_time_scale = 1 -- wall-clock pacing (docs/simulator.md, "Simulated time")
    elseif a == "--sim" then
      local v = args[i + 1]
      local kind, names = "command", nil
      if v and not v:find("=") and not v:match("^%-") then kind, names = sim_word(v) end
      if kind == "scenario" then
        opts.sim = v
        i = i + 1
      elseif kind == "unknown" then
        local sug = names and runbook.suggest(v, names)
        return nil, string.format("--sim: unknown scenario %s (%s)", v,
          sug and ("did you mean " .. sug .. "?") or
          (names and ("scenarios: " .. table.concat(names, ", ")) or "see nitrodiag sim"))
      else
        opts.sim = "healthy"
      end
    elseif a:match("^%-") and a ~= "-" and not a:match("^%-%d") then
      return nil, "unknown option " .. a .. " (see nitrodiag --help)"
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  if opts.deadline then
    local d = tonumber(opts.deadline)
    if not d or d <= 0 then return nil, "--deadline needs a positive number of seconds, got " .. opts.deadline end
    opts.deadline = d
  end
  return opts, rest
end

-- A runbook's help: the usage line with positional arguments as <name>, then each argument; a default that is empty
-- is not shown (nothing is the default), choices are listed.
local function print_runbook_help(def)
  print(string.format("%s — %s", def.name, def.description))
  print("file: " .. def.path)
  local use = { "usage: nitrodiag " .. def.name }
  local pos = {}
  for _, a in ipairs(def.args) do if a.positional then pos[#pos + 1] = a end end
  table.sort(pos, function(x, y) return x.positional < y.positional end)
  for _, a in ipairs(pos) do use[#use + 1] = a.required and ("<" .. a.name .. ">") or ("[<" .. a.name .. ">]") end
  for _, a in ipairs(def.args) do
    if a.type == "rest" then use[#use + 1] = "[" .. a.name .. " ...]" end
  end
  if #def.args > #pos then use[#use + 1] = "[key=value ...]" end
  print(table.concat(use, " "))
  if #def.args == 0 then print("arguments: none") return end
  print("arguments:")
  for _, a in ipairs(def.args) do
    local d = ""
    local dv = a.default
    if type(dv) == "table" then dv = table.concat(dv, ",") end
    if a.required then d = " (required)"
    elseif dv ~= nil and tostring(dv) ~= "" then d = " (default " .. tostring(dv) .. ")" end
    if a.choices then
      local c = {}
      for _, x in ipairs(a.choices) do c[#c + 1] = tostring(x) end
      d = d .. " [" .. table.concat(c, "|") .. "]"
    end
    local label
    if a.positional then label = "<" .. a.name .. ">"
    elseif a.type == "rest" then label = a.name .. " ..."
    else label = a.name .. "=" end
    -- wrapped to the terminal (continuation under the help text); one line each when not a terminal
    local line = string.format("  %-16s %-8s %s%s", label, a.type, a.help or "", d)
    print(table.concat(runbook.wrap(line, host.columns(1), string.rep(" ", 28)), "\n"))
  end
  if #pos > 0 then print("<name>: positional, given without key= (also accepted as name=value)") end
end

local function cmd_list(opts)
  local all = runbook.list()
  if opts.json then
    local out = json.array({})
    for _, e in ipairs(all) do
      out[#out + 1] = { name = e.name, description = e.description, path = e.path, shadows = json.array(e.shadows) }
    end
    print(json.encode(out, { indent = 2 }))
    return 0
  end
  for _, e in ipairs(all) do
    print(string.format("%-14s %s", e.name, e.description))
    print(string.format("%-14s   %s%s", "", e.path, #e.shadows > 0 and ("  (overrides " .. table.concat(e.shadows, ", ") .. ")") or ""))
  end
  return 0
end

local function cmd_run(opts, target, words)
  if not target then return usage_error("run: which runbook? (see nitrodiag list)") end
  local path, err = runbook.find(target)
  if not path then
    local names = {}
    for _, e in ipairs(runbook.list()) do names[#names + 1] = e.name end
    local s = runbook.suggest(target, names)
    return usage_error(err .. (s and (" (did you mean " .. s .. "?)") or " (see nitrodiag list)"))
  end
  local def, lerr = runbook.load(path)
  if not def then return usage_error("cannot load runbook: " .. lerr, runbook.EXIT.crashed) end
  if opts.help then print_runbook_help(def) return 0 end
  local args, aerr = runbook.parse_args(def, words)
  if not args then return usage_error(aerr) end
  if opts.root then
    local ok, rerr = host.set_root(opts.root)
    if not ok then return usage_error("--root: " .. rerr) end
  end
  if opts.verbose then host.verbosity(1) elseif opts.quiet then host.verbosity(-1) end
  local okx, result = xpcall(runbook.execute, debug.traceback, def, args, opts)
  if not okx then
    io.stderr:write("nitrodiag: the runbook engine crashed: ", tostring(result), "\n")
    return runbook.EXIT.crashed
  end
  if opts.json then io.stdout:write(json.encode(result, { indent = 2 }), "\n") end
  return result.exit_code
end

function M.main(_, args)
  for _, a in ipairs(args) do
    if a == "--" then break end
    if a == "--json" then json_mode = true end
  end
  local opts, rest = M.parse(args)
  if not opts then return usage_error(rest) end
  if opts.version then print("nitrodiag " .. host.version()) return 0 end
  local cmd = table.remove(rest, 1)
  if cmd == nil then
    if opts.help then print(M.USAGE) return 0 end
    if host.isatty(0) and host.isatty(1) then cmd = "repl" else
      io.stderr:write(M.USAGE, "\n")
      return runbook.EXIT.usage
    end
  end
  if cmd == "help" then
    if rest[1] then opts.help = true return cmd_run(opts, rest[1], {}) end
    print(M.USAGE)
    return 0
  end
  if opts.help and cmd ~= "run" then
    if cmd == "list" or cmd == "repl" or cmd == "spec" then print(M.USAGE) return 0 end
    return cmd_run(opts, cmd, {})
  end
  if cmd == "list" then return cmd_list(opts) end
  if cmd == "repl" then return require("nd.repl").main(opts, rest) end
  if cmd == "spec" then
    if #rest == 0 then return usage_error("spec: which files?") end
    if opts.sim then
      local sim = require("nd.sim")
      local s <close>, err = sim.activate(opts.sim)
      if not s then return usage_error("--sim: " .. tostring(err)) end
      return require("nd.spec").run_files(rest)
    end
    return require("nd.spec").run_files(rest)
  end
  if cmd == "run" then
    local target = table.remove(rest, 1)
    return cmd_run(opts, target, rest)
  end
  return cmd_run(opts, cmd, rest)
end

return M
