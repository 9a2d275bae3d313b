-- nd.repl — `nitrodiag repl`: Lua 5.4 with every nd.* module, on the shared loop. Modelled on lua.c: a line is tried
-- as `return <line>` first so expressions print; input that ends early (an error ending in <eof>) continues on the
-- next line; Ctrl-C interrupts the running chunk (and kills the commands it started) and returns to the prompt;
-- waiting primitives (nd.proc.run, nd.sleep, …) work directly: the REPL runs the loop until the call completes.
-- The global options apply as they do to runbooks: `nitrodiag --sim SCENARIO repl` explores the simulated host (its
-- nitro-cli, files and vsock), `--root DIR` reads host files under DIR.
local replc = require "nd.replc"
local pretty = require "nd.pretty"
local host = require "nd.host"

local M = {}

local BANNER = "nitrodiag %s REPL — Lua 5.4 with nd.* (try: nd.proc.run{'uname','-a'}, nd.help()). Ctrl-D exits."

-- The global environment of the session: everything in _G plus `nd` and the loaded nd modules by short name.
local function session_env()
  local nd = require "nd"
  _G.nd = nd
  for _, name in ipairs({ "proc", "host", "json", "fs" }) do
    local ok, m = pcall(require, "nd." .. name)
    if ok then nd[name] = m end
  end
  nd.help = function(name)
    if name == nil then
      print("modules: " .. table.concat(M.module_names(), ", "))
      print("nd.help(\"nd.eif\") shows one module; tab completes module members; values print themselves; " ..
        "Ctrl-C interrupts; Ctrl-D exits")
      return
    end
    local text, err = M.help_text(name)
    print(text or err)
  end
  return _G
end

-- The section "## <module>" of docs/lua-api.md, when the docs are reachable (source tree or installed share dir).
local function doc_section(modname)
  for _, p in ipairs({ host.source_dir() .. "/docs/lua-api.md", host.share_dir() .. "/doc/lua-api.md" }) do
    local f = io.open(p, "r")
    if f then
      local text = f:read("a")
      f:close()
      local out, inside = {}, false
      for line in (text .. "\n"):gmatch("([^\n]*)\n") do
        if line:match("^## ") then
          if inside then break end
          inside = line == "## " .. modname
        end
        if inside then out[#out + 1] = line end
      end
      if #out > 0 then return table.concat(out, "\n"):gsub("%s+$", "") end
    end
  end
  return nil
end

-- help_text(name) -> text about one module ("nd.eif" or "eif"): its members, and its documentation when found |
-- nil, msg for a name that is not a module.
function M.help_text(name)
  if type(name) == "table" then
    for k, v in pairs(package.loaded) do if v == name and type(k) == "string" then name = k break end end
  end
  if type(name) ~= "string" then return nil, "nd.help(name): give a module name, e.g. nd.help(\"nd.eif\")" end
  local modname = name:match("^nd%.") and name or ("nd." .. name)
  if name == "nd" then modname = "nd" end
  local known = false
  for _, n in ipairs(M.module_names()) do if n == modname then known = true end end
  local ok, mod = pcall(require, modname)
  if not known and not ok then
    return nil, string.format("no module %s (modules: %s)", modname, table.concat(M.module_names(), ", "))
  end
  local out = { modname }
  if ok and type(mod) == "table" then
    local names = {}
    for k, v in pairs(mod) do
      if type(k) == "string" then names[#names + 1] = k .. (type(v) == "function" and "()" or "") end
    end
    table.sort(names)
    out[#out + 1] = "members: " .. table.concat(names, ", ")
  end
  local doc = doc_section(modname)
  if doc then out[#out + 1] = doc end
  return table.concat(out, "\n")
end

function M.module_names()
  local out = {}
  local reg = debug.getregistry()["nd.builtin_modules"]
  if reg then
    for _, n in ipairs(reg()) do out[#out + 1] = n end
  end
  table.sort(out)
  return out
end

-- Completion of dotted names: "nd.pr" -> "nd.proc", "nd.proc.r" -> "nd.proc.run", also methods after ':'.
function M.complete(word, env)
  env = env or _G
  local base, sep, partial = word:match("^(.-)([%.:])([%w_]*)$")
  local t = env
  if base then
    for part in base:gmatch("[^%.:]+") do
      local ok, v = pcall(function() return t[part] end)
      if not ok or v == nil then return {} end
      t = v
    end
  else
    partial, base, sep = word, "", ""
  end
  local out, seen = {}, {}
  local function add_from(tbl)
    if type(tbl) ~= "table" then return end
    for k in pairs(tbl) do
      if type(k) == "string" and k:sub(1, #partial) == partial and not seen[k] then
        seen[k] = true
        out[#out + 1] = base .. sep .. k
      end
    end
  end
  if type(t) == "table" then
    add_from(t)
    local mt = getmetatable(t)
    if mt and type(mt.__index) == "table" then add_from(mt.__index) end
    -- lazily loaded nd submodules
    if t == rawget(env, "nd") then
      for _, n in ipairs(M.module_names()) do
        local short = n:match("^nd%.([%w_]+)$")
        if short then add_from({ [short] = true }) end
      end
    end
  elseif type(t) == "userdata" then
    local mt = getmetatable(t)
    if mt and type(mt.__index) == "table" then add_from(mt.__index) end
  end
  table.sort(out)
  return out
end

-- Compiles the input: expression first, then statement. Returns fn | nil, err, incomplete.
function M.compile(src, env)
  local fn = load("return " .. src, "=stdin", "t", env)
  if fn then return fn end
  local err
  fn, err = load(src, "=stdin", "t", env)
  if fn then return fn end
  if err:match("<eof>$") then return nil, err, true end
  return nil, err, false
end

local function show_results(res)
  if res.n == 0 then return end
  local parts = {}
  for i = 1, res.n do parts[i] = pretty.format(res[i]) end
  print(table.concat(parts, "\t"))
end

-- The session's host, as the options ask: --root, --sim. Returns the simulated host (closed by the caller) or nil;
-- nil, msg when it cannot be had.
local function setup_host(opts)
  if opts and opts.root then
    local ok, err = host.set_root(opts.root)
    if not ok then return nil, "--root: " .. tostring(err) end
  end
  if opts and opts.sim then
    local okm, simmod = pcall(require, "nd.sim")
    if not okm then return nil, "the simulated host is not available in this build" end
    local s, err = simmod.activate(opts.sim)
    if not s then return nil, "cannot start the simulated host: " .. tostring(err) end
    return s
  end
  return false
end

function M.main(opts, args)
  local sim, serr = setup_host(opts)
  if sim == nil then
    io.stderr:write("nitrodiag: ", serr, "\n")
    return 2
  end
  local sim_guard <close> = setmetatable({}, { __close = function() if sim then sim:close() end end })
  local env = session_env()
  local state <close> = replc.start()
  replc.set_completer(function(word) return M.complete(word, env) end)
  local histfile = (os.getenv("HOME") or "/tmp") .. "/.nitrodiag_history"
  replc.history_load(histfile)
  if not (opts and opts.quiet) then
    print(string.format(BANNER, host.version()))
    if sim then
      print(string.format("simulated host: %s (root %s; nitro-cli and the other tools are its stand-ins)", opts.sim,
        host.root()))
    elseif host.root() ~= "/" then
      print("host files are read under " .. host.root())
    end
  end
  local buffer
  while true do
    local line = replc.readline(buffer and ">> " or "> ")
    if line == nil then
      io.write("\n")
      break
    elseif line == false then
      io.write("^C\n")
      buffer = nil
    else
      local src = buffer and (buffer .. "\n" .. line) or line
      local fn, err, incomplete = M.compile(src, env)
      if incomplete then
        buffer = src
      else
        buffer = nil
        if src:match("%S") then replc.history_add(src) end
        if not fn then
          print(err)
        else
          local box = {}
          local status = replc.run(function()
            box.res = table.pack(xpcall(fn, debug.traceback))
          end)
          if status == "interrupted" then
            print("interrupted")
          elseif status == "stuck" then
            print("the chunk waits for something that can never happen")
          elseif box.res then
            if box.res[1] then
              show_results(table.pack(table.unpack(box.res, 2, box.res.n)))
            else
              local msg = tostring(box.res[2])
              if msg:match("interrupted") then print("interrupted") else print(msg) end
            end
          else
            print("interrupted")
          end
        end
      end
    end
  end
  replc.history_save(histfile)
  return 0
end

return M
