-- nd.sim.vsock — vsock on the simulated host. There is no vsock loopback here, so while a simulated host is active
-- nd.vsock's connect and ping (in C, through the router registered with vsock.set_sim_router — not a Lua table a
-- runbook could replace) route `vsock:CID:PORT` to the simulated enclaves: when the state says an enclave with
-- that CID runs and its application listens on PORT (the vsock-pingpong test image in vsock mode listens on 5000),
-- the call goes to a unix socket served in this process by what that application does (read up to 16 bytes,
-- answer "pong" to "ping", "unknown" to anything else, close). Otherwise it fails the way nd.vsock words a CID
-- where nothing listens. Runbooks keep calling nd.vsock unchanged; messages and results name the vsock address.
--
--   local uninstall = require("nd.sim.vsock").install(root)   -- nd.sim.activate does this
--   uninstall()                                               -- sim:close() does this: listeners closed, restored
local uv = require "luv"
local nd = require "nd"
local fs = require "nd.fs"
local util = require "nd.sim.util"
local state = require "nd.sim.state"

local M = {}

-- The application listening at (cid, port) on the simulated host, or nil.
local function listener_of(root, cid, port)
  local st = state.load(root)
  if not st then return nil end
  local now = util.time()
  for _, e in ipairs(st.enclaves) do
    local gone = e.plan and e.plan.stops_after and now >= e.started + e.plan.stops_after
    if e.cid == cid and e.plan and e.plan.live then
      -- booted for real (qemu backend): every port goes to the guest through nd-vhost-vsock
      if require("nd.sim.backend_qemu").alive(e.plan) then return "qemu", e end
    elseif e.cid == cid and not gone then
      for _, l in ipairs(e.plan and e.plan.listen or {}) do
        if l.port == port then return l.proto or "pingpong", e end
      end
      return nil, e
    end
  end
  return nil
end

local function nothing_listens(addr, cid, port)
  return nil, string.format("connect %s: nothing listens at CID %d port %d (ECONNRESET): the enclave is not running, "
    .. "its server has not started yet, or it listens on another port (check the CID with `nitro-cli describe-enclaves`)",
    addr, cid, port), "ECONNRESET"
end

-- install(root) -> uninstall function (nil when nd.vsock is not built in)
function M.install(root)
  local ok, vsock = pcall(require, "nd.vsock")
  if not ok or type(vsock) ~= "table" then return nil end
  local dir = root .. "/run/vsock"
  local tmpdir
  if #dir > 80 then -- unix socket paths are short (108 bytes)
    -- named like every nitrodiag temporary (nitrodiag-<what>-p<owner pid>-XXXXXX), so the next run's sweep removes
    -- it when this process was killed before uninstall ran
    tmpdir = uv.fs_mkdtemp(string.format("/tmp/nitrodiag-simvsock-p%d-XXXXXX", uv.os_getpid()))
    dir = tmpdir
  else
    fs.mkdir_p(dir)
  end
  local servers = {}

  local function serve(proto, path)
    local l, err, code = vsock.listen("unix:" .. path)
    if not l then return nil, err, code end
    local srv = { listener = l }
    srv.task = nd.spawn(function()
      while true do
        local c = l:accept()
        if not c then return end
        nd.spawn(function()
          local data = c:read(16, { timeout = 5 })
          if data and proto == "pingpong" then
            c:write((data:gsub("%s+$", "")) == "ping" and "pong" or "unknown")
          end
          c:close()
        end)
      end
    end)
    return srv
  end

  -- vsock:CID:PORT -> unix address of a served simulated application | nil, err, code (nd.vsock's wording)
  local function route(addr)
    local a = type(addr) == "string" and vsock.parse(addr)
    if not a or a.kind ~= "vsock" or type(a.cid) ~= "number" then return nil, "connect " .. tostring(addr) .. ": not a vsock address", "EINVAL" end
    local proto, enclave = listener_of(root, a.cid, a.port)
    if not proto then return nothing_listens(addr, a.cid, a.port) end
    local key = a.cid .. "_" .. a.port .. (proto == "qemu" and ("_" .. enclave.slot) or "")
    local path = dir .. "/" .. key .. ".sock"
    if not servers[key] then
      local srv, err, code
      if proto == "qemu" then
        -- booted for real: a relay to the guest's port through nd-vhost-vsock (nd.sim.backend_qemu)
        srv, err, code = require("nd.sim.backend_qemu").relay(path, enclave.plan, a.port)
      else
        srv, err, code = serve(proto, path)
      end
      if not srv then return nil, err, code end
      servers[key] = srv
    end
    return "unix:" .. path
  end

  -- The router lives in nd.vsock's C side (vsock.set_sim_router): under the simulated host every vsock connect
  -- and ping goes through it, even through a reference to nd.vsock.connect taken before activation.
  vsock.set_sim_router(route)

  return function()
    vsock.set_sim_router(nil)
    for _, srv in pairs(servers) do
      srv.listener:close()
      srv.task:cancel("simulated host closed")
    end
    servers = {}
    if tmpdir then fs.rm_rf(tmpdir) end
  end
end

return M
