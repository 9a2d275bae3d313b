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
  --sim [SCENARIO]    run against the simulated Nitro host (default scenario: healthy)
  --sign-key FILE     sign the bundle's manifest (HMAC secret or PEM private key; also $NITRODIAG_SIGN_KEY)
  --deadline SECONDS  hard deadline for the whole run (overrides the runbook's)
  -v, --verbose       show step logs and tracebacks
  -q, --quiet         only the verdict
  --version           print the version
  -h, --help          this text

runbooks are searched in ./, $NITRODIAG_PATH, /etc/nitrodiag/runbooks, then the installed share directory:
the first match wins, so an edited copy overrides the shipped one.

exit status: 0 all steps ok or warn, 1 a step failed, 2 usage error, 3 the runbook crashed, 4 deadline hit]]

local function usage_error(msg)
  io.stderr:write("nitrodiag: ", msg, "\n")
  return runbook.EXIT.usage
end

local function is_scenario(word)
  local ok, sim = pcall(require, "nd.sim")
  if ok and sim and sim.scenarios then
    for _, s in ipairs(sim.scenarios()) do
      if s.name == word then return true end
    end
    return false
  end
  return runbook.find(word) == nil
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
    elseif a == "--sim" then
      local v = args[i + 1]
      if v and not v:find("=") and not v:match("^%-") and is_scenario(v) then
        opts.sim = v
        i = i + 1
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

local function print_runbook_help(def)
  print(string.format("%s — %s", def.name, def.description))
  print("file: " .. def.path)
  if #def.args == 0 then print("arguments: none") return end
  print("arguments:")
  for _, a in ipairs(def.args) do
    local d = a.default ~= nil and (" (default " .. tostring(a.default) .. ")") or (a.required and " (required)" or "")
    print(string.format("  %-16s %-8s %s%s", a.name .. "=", a.type, a.help or "", d))
  end
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
  local def, lerr, kind = runbook.load(path)
  if not def and kind == "script" then return 0 end -- a plain Lua script: loading it ran it
  if not def then
    io.stderr:write("nitrodiag: cannot load runbook: ", lerr, "\n")
    return runbook.EXIT.crashed
  end
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
      local s, err = sim.activate(opts.sim)
      if not s then return usage_error("--sim: " .. tostring(err)) end
      local status = require("nd.spec").run_files(rest)
      s:close()
      return status
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
