-- nd.sim.tools — stand-ins for the other host commands runbooks call on a Nitro parent instance: systemctl (the
-- allocator service and the other units of the scenario), docker (build/inspect/images over Docker-like image
-- configurations), dmesg and journalctl (from the simulated kernel log and journal). They keep their state in
-- nd.sim.state like the nitro-cli stand-in, and print the way the real tools print in their default formats.
local uv = require "luv"
local fs = require "nd.fs"
local util = require "nd.sim.util"
local state = require "nd.sim.state"
local allocator = require "nd.sim.allocator"

local M = {}

local function out(s) io.stdout:write(s, "\n") end
local function err(s) io.stderr:write(s, "\n") end

local function unit_name(u)
  if not u then return nil end
  if not u:find("%.") then return u .. ".service" end
  return u
end

local function journal_line(st, j)
  local host = st.host.hostname:match("^[^.]+")
  local who = j.ident .. (j.pid and j.pid > 1 and ("[" .. j.pid .. "]") or (j.ident == "systemd" and "[1]" or ""))
  return string.format("%s %s %s: %s", os.date("!%b %d %H:%M:%S", j.t), host, who, j.msg)
end

-- ---- systemctl ---------------------------------------------------------------------------------------------------

local function status(st, unit, svc)
  local active = svc.active
  local sub = active == "active" and (svc.type == "oneshot" and "exited" or "running") or (active == "failed" and "failed" or "dead")
  local lines = {}
  local dot = active == "active" and "●" or (active == "failed" and "×" or "○")
  lines[#lines + 1] = string.format("%s %s - %s", dot, unit, svc.description)
  lines[#lines + 1] = string.format("     Loaded: loaded (/usr/lib/systemd/system/%s; %s; preset: disabled)", unit,
    svc.enabled and "enabled" or "disabled")
  local since = os.date("!%a %Y-%m-%d %H:%M:%S UTC", svc.since)
  if active == "active" then
    lines[#lines + 1] = string.format("     Active: active (%s) since %s", sub, since)
  elseif active == "failed" then
    lines[#lines + 1] = string.format("     Active: failed (Result: %s) since %s", svc.result or "exit-code", since)
  else
    lines[#lines + 1] = "     Active: inactive (dead)"
  end
  if svc.type == "oneshot" and svc.pid and svc.pid > 0 then
    local okx = active ~= "failed"
    lines[#lines + 1] = string.format("    Process: %d ExecStart=%s (code=exited, status=%s)", svc.pid, svc.exec,
      okx and "0/SUCCESS" or "1/FAILURE")
    lines[#lines + 1] = string.format("   Main PID: %d (code=exited, status=%s)", svc.pid, okx and "0/SUCCESS" or "1/FAILURE")
  elseif active == "active" then
    lines[#lines + 1] = string.format("   Main PID: %d (%s)", svc.pid, svc.exec:match("[^/]+$"))
  end
  local js = {}
  for _, j in ipairs(st.journal) do if j.unit == unit then js[#js + 1] = j end end
  if #js > 0 then
    lines[#lines + 1] = ""
    for i = math.max(1, #js - 9), #js do lines[#lines + 1] = journal_line(st, js[i]) end
  end
  return table.concat(lines, "\n")
end

function M.systemctl(args)
  local root = util.sim_root()
  local verbs, units, quiet = {}, {}, false
  for _, a in ipairs(args) do
    if a == "-q" or a == "--quiet" then quiet = true
    elseif a:match("^%-") then -- --no-pager, --full, -l …: accepted and ignored
    elseif #verbs == 0 then verbs[1] = a
    else units[#units + 1] = unit_name(a) end
  end
  local verb = verbs[1]
  if not verb then err("systemctl (nitrodiag simulator): a command is required") return 1 end
  return state.update(root, function(st)
    local rc = 0
    if #units == 0 and (verb == "list-units" or verb == "list-unit-files") then
      local names = {}
      for u in pairs(st.services) do names[#names + 1] = u end
      table.sort(names)
      for _, u in ipairs(names) do
        local s = st.services[u]
        if verb == "list-units" then
          out(string.format("  %-45s loaded %-8s %-7s %s", u, s.active, s.active == "active" and (s.type == "oneshot" and "exited" or "running") or "dead", s.description))
        else
          out(string.format("%-45s %s", u, s.enabled and "enabled" or "disabled"))
        end
      end
      return 0
    end
    for _, unit in ipairs(units) do
      local svc = st.services[unit]
      if not svc then
        if verb == "is-active" then if not quiet then out("inactive") end rc = 3
        elseif verb == "is-enabled" then err("Failed to get unit file state for " .. unit .. ": No such file or directory") rc = 1
        elseif verb == "status" then err("Unit " .. unit .. " could not be found.") rc = 4
        else err(string.format("Failed to %s %s: Unit %s not found.", verb, unit, unit)) rc = 5 end
      elseif verb == "status" then
        out(status(st, unit, svc))
        if svc.active ~= "active" then rc = 3 end
      elseif verb == "is-active" then
        if not quiet then out(svc.active) end
        if svc.active ~= "active" then rc = 3 end
      elseif verb == "is-failed" then
        if not quiet then out(svc.active) end
        if svc.active ~= "failed" then rc = 1 end
      elseif verb == "is-enabled" then
        if not quiet then out(svc.enabled and "enabled" or "disabled") end
        if not svc.enabled then rc = 1 end
      elseif verb == "enable" or verb == "disable" then
        local en = verb == "enable"
        if svc.enabled ~= en then
          if en then
            err(string.format("Created symlink /etc/systemd/system/multi-user.target.wants/%s → /usr/lib/systemd/system/%s.", unit, unit))
          else
            err(string.format("Removed \"/etc/systemd/system/multi-user.target.wants/%s\".", unit))
          end
        end
        svc.enabled = en
      elseif verb == "start" or verb == "restart" or verb == "reload-or-restart" then
        if unit == allocator.UNIT then
          if verb ~= "start" or svc.active ~= "active" then
            if verb ~= "start" and svc.active == "active" then
              local r = allocator.stop(root, st)
              if not r.ok then
                err(string.format("Job for %s failed because the control process exited with error code.", unit))
                err(string.format("See \"systemctl status %s\" and \"journalctl -xeu %s\" for details.", unit, unit))
                return 1
              end
            end
            local r = allocator.start(root, st)
            if not r.ok then
              err(string.format("Job for %s failed because the control process exited with error code.", unit))
              err(string.format("See \"systemctl status %s\" and \"journalctl -xeu %s\" for details.", unit, unit))
              rc = 1
            end
          end
        else
          if svc.active ~= "active" then
            svc.active, svc.since, svc.pid = "active", math.floor(require("nd.sim.util").time()), state.pid(st)
            state.journal(st, unit, "systemd", 1, "Started " .. svc.description .. ".")
          end
        end
      elseif verb == "stop" then
        if unit == allocator.UNIT then
          if svc.active == "active" then
            local r = allocator.stop(root, st)
            if not r.ok then
              err(string.format("Job for %s failed because the control process exited with error code.", unit))
              err(string.format("See \"systemctl status %s\" and \"journalctl -xeu %s\" for details.", unit, unit))
              rc = 1
            end
          end
        elseif svc.active == "active" then
          svc.active, svc.since = "inactive", math.floor(require("nd.sim.util").time())
          state.journal(st, unit, "systemd", 1, "Stopped " .. svc.description .. ".")
        end
      elseif verb == "reset-failed" then
        if svc.active == "failed" then svc.active = "inactive" end
      else
        err("systemctl (nitrodiag simulator): unsupported command " .. verb)
        return 1
      end
    end
    return rc
  end)
end

-- ---- journalctl ------------------------------------------------------------------------------------------------

function M.journalctl(args)
  local root = util.sim_root()
  local st = assert(state.load(root))
  local unit, lines, cat, i = nil, nil, false, 1
  while i <= #args do
    local a = args[i]
    if a == "-u" or a == "--unit" then i = i + 1 unit = unit_name(args[i])
    elseif a:match("^%-%-unit=") then unit = unit_name(a:match("=(.*)$"))
    elseif a == "-n" or a == "--lines" then i = i + 1 lines = tonumber(args[i])
    elseif a:match("^%-%-lines=") then lines = tonumber(a:match("=(.*)$"))
    elseif a:match("^%-n%d+$") then lines = tonumber(a:sub(3))
    elseif a == "-o" or a == "--output" then i = i + 1 cat = args[i] == "cat"
    elseif a == "--output=cat" or a == "-ocat" then cat = true
    end
    i = i + 1
  end
  local js = {}
  for _, j in ipairs(st.journal) do if not unit or j.unit == unit then js[#js + 1] = j end end
  local first = lines and math.max(1, #js - lines + 1) or 1
  if #js == 0 then out("-- No entries --") return 0 end
  for k = first, #js do
    out(cat and js[k].msg or journal_line(st, js[k]))
  end
  return 0
end

-- ---- dmesg ---------------------------------------------------------------------------------------------------------

function M.dmesg(args)
  local root = util.sim_root()
  local st = assert(state.load(root))
  local human = false
  for _, a in ipairs(args) do if a == "-T" or a == "--ctime" then human = true end end
  for _, d in ipairs(st.dmesg) do
    if human then
      out(os.date("![%a %b %e %H:%M:%S %Y] ", math.floor(st.host.boot_time + d.t)) .. d.line)
    else
      out(string.format("[%5d.%06d] %s", math.floor(d.t), math.floor((d.t % 1) * 1e6 + 0.5), d.line))
    end
  end
  return 0
end

-- ---- docker --------------------------------------------------------------------------------------------------------

-- Reads the parts of a Dockerfile that decide what an enclave runs: ARG, ENV, ENTRYPOINT, CMD, FROM.
local function parse_dockerfile(text, build_args)
  local cfg = { Env = {} }
  local args = {}
  local function subst(s)
    return (s:gsub("%${([%w_]+)}", function(k) return args[k] or "" end):gsub("%$([%w_]+)", function(k) return args[k] or "" end))
  end
  local function words(rest)
    if rest:match("^%s*%[") then
      local cj = require "cjson.safe"
      local v = cj.decode(rest)
      if type(v) == "table" then return v end
    end
    return { "/bin/sh", "-c", rest }
  end
  text = text:gsub("\\\n", " ")
  for line in text:gmatch("[^\n]+") do
    local ins, rest = line:match("^%s*(%a+)%s+(.-)%s*$")
    ins = ins and ins:upper()
    if ins == "FROM" then
      local base = rest:match("^(%S+)")
      -- a new stage: its own ENV, ARGs and command (multi-stage builds keep only the last stage)
      cfg.Shell = base ~= "scratch"
      cfg.Base = base
      cfg.Entrypoint, cfg.Cmd = nil, nil
      cfg.Env = {}
      args = {}
    elseif ins == "ARG" then
      local k, v = rest:match("^([%w_]+)=?(.*)$")
      if k then args[k] = build_args[k] or (v ~= "" and v or nil) end
    elseif ins == "ENV" then
      local k, v = rest:match("^([%w_]+)=(.*)$")
      if not k then k, v = rest:match("^([%w_]+)%s+(.*)$") end
      if k then cfg.Env[#cfg.Env + 1] = k .. "=" .. subst((v:gsub('^"(.*)"$', "%1"))) end
    elseif ins == "ENTRYPOINT" then
      cfg.Entrypoint = words(rest)
      cfg.Cmd = nil -- ENTRYPOINT resets an inherited CMD
    elseif ins == "CMD" then
      cfg.Cmd = words(rest)
    elseif ins == "COPY" or ins == "ADD" then
      if rest:find("busybox") then cfg.Shell = true end
    end
  end
  return cfg
end

-- A stable image ID for tag and its configuration (sorted-key JSON: the same in every process).
local image_id
function M.image_id(tag, cfg) return "sha256:" .. image_id(tag, cfg):rep(5):sub(1, 64) end
function image_id(tag, cfg)
  local s = tag .. require("nd.json").encode(cfg)
  local h = 0
  for i = 1, #s do h = (h * 31 + s:byte(i)) % 0xffffffffff end
  return string.format("%012x", h % 0xffffffffffff)
end

local function cfg_json(v)
  if v == nil then return "null" end
  local cj = require "cjson"
  local ok, s = pcall(cj.encode, v)
  if ok then return (s:gsub("\\/", "/")) end
  return "null"
end

function M.docker(args)
  local root = util.sim_root()
  local verb = args[1]
  if verb == "image" and args[2] == "inspect" then verb = "inspect" table.remove(args, 1) end
  if verb == "image" and (args[2] == "ls" or args[2] == "list") then verb = "images" end
  if verb == "build" then
    local tag, file, dir, bargs = nil, nil, nil, {}
    local i = 2
    while i <= #args do
      local a = args[i]
      if a == "-t" or a == "--tag" then i = i + 1 tag = args[i]
      elseif a:match("^%-%-tag=") then tag = a:match("=(.*)$")
      elseif a == "-f" or a == "--file" then i = i + 1 file = args[i]
      elseif a == "--build-arg" then i = i + 1 local k, v = args[i]:match("^([^=]+)=(.*)$") if k then bargs[k] = v end
      elseif a:match("^%-%-build%-arg=") then local k, v = a:match("=([^=]+)=(.*)$") if k then bargs[k] = v end
      elseif a == "-q" or a == "--quiet" or a == "--no-cache" or a == "--pull" then -- accepted
      elseif a:match("^%-") then i = i + 1 -- an option with a value we ignore (--network host, --platform …)
      else dir = a end
      i = i + 1
    end
    if not dir then err("\"docker build\" requires exactly 1 argument.\nSee 'docker build --help'.") return 1 end
    tag = tag or "<none>:<none>"
    if tag ~= "<none>:<none>" and not tag:find(":[^/]+$") then tag = tag .. ":latest" end
    local df = file or (dir .. "/Dockerfile")
    return state.update(root, function(st)
      local text = fs.read(df)
      local cfg
      if text then
        cfg = parse_dockerfile(text, bargs)
        -- a scenario image of the same repository decides the application behaviour fields
        local repo = tag:match("^(.-):[^:]*$") or tag
        for t, c in pairs(st.images) do
          if (t:match("^(.-):[^:]*$") or t) == repo then
            cfg.App = cfg.App or c.App
            if c.Shell ~= nil and cfg.Shell == nil then cfg.Shell = c.Shell end
          end
        end
      else
        local base = st.images[tag] or st.images[(tag:match("^(.-):[^:]*$") or tag) .. ":latest"]
        if not base then
          err(string.format("ERROR: failed to solve: failed to read dockerfile: open %s: no such file or directory", df))
          return 1
        end
        cfg = {}
        for k, v in pairs(base) do cfg[k] = v end
        if cfg.Env then
          local env = {}
          for _, kv in ipairs(cfg.Env) do
            env[#env + 1] = (kv:gsub("%${([%w_]+)}", function(k) return bargs[k] or "" end))
          end
          cfg.Env = env
        end
      end
      st.images[tag] = cfg
      local id = image_id(tag, cfg)
      out("Sending build context to Docker daemon  3.584kB")
      out("Step 1/1 : (simulated build of " .. df .. ")")
      out("Successfully built " .. id)
      out("Successfully tagged " .. tag)
      return 0
    end)
  end
  local st = assert(state.load(root))
  if verb == "inspect" then
    local fmt, names = nil, {}
    local i = 2
    while i <= #args do
      local a = args[i]
      if a == "-f" or a == "--format" then i = i + 1 fmt = args[i]
      elseif a:match("^%-%-format=") then fmt = a:match("=(.*)$")
      elseif a:match("^%-%-type") then if a == "--type" then i = i + 1 end
      else names[#names + 1] = a end
      i = i + 1
    end
    local rc, objs = 0, {}
    for _, n in ipairs(names) do
      local tag = n:find(":[^/]+$") and n or (n .. ":latest")
      local cfg = st.images[tag]
      if not cfg then
        err("Error: No such object: " .. n)
        rc = 1
      elseif fmt then
        local path = fmt:match("^{{%s*json%s+%.Config%.(%w+)%s*}}$")
        local plain = fmt:match("^{{%s*%.Config%.(%w+)%s*}}$")
        if fmt:match("^{{%s*json%s+%.Config%s*}}$") then
          out(cfg_json({ Entrypoint = cfg.Entrypoint, Cmd = cfg.Cmd, Env = cfg.Env }))
        elseif path then
          out(cfg_json(cfg[path]))
        elseif plain then
          local v = cfg[plain]
          out(type(v) == "table" and ("[" .. table.concat(v, " ") .. "]") or (v == nil and "[]" or tostring(v)))
        elseif fmt:match("^{{%s*%.Id%s*}}$") then
          out("sha256:" .. image_id(tag, cfg):rep(5):sub(1, 64))
        else
          err("template parsing error (nitrodiag simulator supports {{json .Config.X}}, {{.Config.X}}, {{.Id}})")
          rc = 1
        end
      else
        objs[#objs + 1] = util.obj{ "Id", "sha256:" .. image_id(tag, cfg):rep(5):sub(1, 64), "RepoTags", util.array{ tag },
          "Config", util.obj{ "Env", util.array(cfg.Env or {}), "Cmd", cfg.Cmd and util.array(cfg.Cmd) or nil,
            "Entrypoint", cfg.Entrypoint and util.array(cfg.Entrypoint) or nil } }
      end
    end
    if not fmt then out(util.json(util.array(objs))) end
    return rc
  elseif verb == "images" then
    out(string.format("%-35s %-10s %-14s %-14s %s", "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"))
    local tags = {}
    for t in pairs(st.images) do tags[#tags + 1] = t end
    table.sort(tags)
    for _, t in ipairs(tags) do
      local repo, tg = t:match("^(.-):([^:]*)$")
      out(string.format("%-35s %-10s %-14s %-14s %s", repo or t, tg or "latest", image_id(t, st.images[t]), "2 hours ago", "4.2MB"))
    end
    return 0
  elseif verb == "version" or verb == "--version" then
    out("Docker version 25.0.8, build 0bab007")
    return 0
  elseif verb == "info" then
    out("Server Version: 25.0.8 (nitrodiag simulator)")
    return 0
  end
  err(string.format("docker: '%s' is not supported by the nitrodiag simulator (build, inspect, images, version).", tostring(verb)))
  return 1
end

return M
