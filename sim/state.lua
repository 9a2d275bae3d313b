-- nd.sim.state — the simulated host's mutable state, one JSON file under the sim root
-- (<root>/var/lib/nitrodiag-sim/state.json), shared by every stand-in process. Updates take a lock and replace the
-- file atomically (write beside, rename), so concurrent nitro-cli calls see either the old or the new state.
--
-- Shape: { version, scenario, backend, host = {instance_id, hostname, cpus, threads_per_core, hugepage_mib,
-- memory_mib, driver, nitro_cli_version, boot_time}, allocator = {memory_mib, cpus}, services = {unit → {active,
-- enabled, since, pid, description, result}}, images = {tag → Docker-like config}, enclaves = {…}, next_pid,
-- next_slot, dmesg = {{t, line}}, journal = {{t, unit, ident, pid, msg}} }.
local cjson = require "cjson"
local fs = require "nd.fs"
local util = require "nd.sim.util"

local M = {}

-- The architecture nitrodiag runs on, in nitro-cli's words (x86_64 or aarch64): the simulated host's default.
function M.native_arch()
  local m = require("luv").os_uname().machine
  if m == "arm64" or m == "aarch64" then return "aarch64" end
  return "x86_64"
end

M.DIR = "/var/lib/nitrodiag-sim"

local function file(root) return root .. M.DIR .. "/state.json" end

-- new(scenario, opts) -> a fresh state for the scenario (nothing reserved yet)
function M.new(sc, opts)
  local h = sc.host or {}
  local now = math.floor(util.time())
  local st = {
    version = 1,
    scenario = sc.name,
    backend = (opts and opts.backend) or sc.backend or "standin",
    host = {
      instance_id = h.instance_id or "i-0123456789abcdef0",
      hostname = h.hostname or "ip-172-31-20-7.ec2.internal",
      cpus = h.cpus or 4,
      threads_per_core = h.threads_per_core or 2,
      hugepage_mib = h.hugepage_mib or 2,
      memory_mib = h.memory_mib or 15524,
      driver = h.driver ~= false,
      nitro_cli_version = h.nitro_cli_version or "1.4.2",
      kernel = h.kernel or ("6.1.112-124.190.amzn2023." .. (h.arch or M.native_arch())),
      arch = h.arch or M.native_arch(), -- a Graviton build simulates a Graviton host unless the scenario says
      boot_timeout = h.boot_timeout,
      -- field conditions (docs/simulator.md): hugepages_usable = false (a container without the host's hugepages:
      -- E35), heartbeat_busy (port 9000 held by a concurrent run-enclave: E36), cpu_release_delay (s the CPUs of an
      -- enclave that just exited stay unavailable: E29), numa_free_mib (memory the allocator's NUMA node can give),
      -- allocator_script = "2021" (reports success after a partial reservation), docker_api_too_new (E50),
      -- gigantic_pages = false (no 1 GiB pages)
      hugepages_usable = h.hugepages_usable, heartbeat_busy = h.heartbeat_busy, cpu_release_delay = h.cpu_release_delay,
      numa_free_mib = h.numa_free_mib, allocator_script = h.allocator_script, docker_api_too_new = h.docker_api_too_new,
      gigantic_pages = h.gigantic_pages,
      boot_time = now - 3600 - (function()
        local oldest = 0 -- the host booted before its oldest enclave started
        for _, e in ipairs(sc.enclaves or {}) do oldest = math.max(oldest, tonumber(e.age) or 86400) end
        return oldest
      end)(),
    },
    allocator = { memory_mib = 0, cpus = {} },
    services = {},
    images = {},
    enclaves = {},
    next_pid = 4100,
    next_slot = 1,
    dmesg = {},
    journal = {},
  }
  st.services["nitro-enclaves-allocator.service"] = {
    description = "Nitro Enclaves Resource Allocator", active = "inactive",
    enabled = not (sc.allocator and sc.allocator.enabled == false), since = now - 3600, pid = 0,
    exec = "/usr/bin/nitro-enclaves-allocator", type = "oneshot",
  }
  for unit, s in pairs(sc.services or {}) do
    st.services[unit] = { description = s.description or unit, active = s.state or "active",
      enabled = s.enabled ~= false, since = now - 3600, pid = 1000 + #unit, exec = s.exec or ("/usr/bin/" .. unit:gsub("%.service$", "")),
      type = s.type or "simple" }
  end
  for tag, cfg in pairs(sc.images or {}) do st.images[tag] = cfg end
  for i, line in ipairs(sc.dmesg or {}) do st.dmesg[i] = { t = 2.5 + i * 0.01, line = line } end
  return st
end

-- JSON numbers come back as floats: integral ones become integers again (ids, pids, CIDs print without ".0")
local function ints(t)
  for k, v in pairs(t) do
    if type(v) == "number" then t[k] = math.tointeger(v) or v
    elseif type(v) == "table" then ints(v) end
  end
  return t
end

-- load(root) -> state | nil, err
function M.load(root)
  local text, err = fs.read(file(root))
  if not text then return nil, "simulated host state: " .. tostring(err) end
  local ok, st = pcall(cjson.decode, text)
  if not ok or type(st) ~= "table" then return nil, "simulated host state is corrupt: " .. file(root) end
  return ints(st)
end

-- save(root, st): atomic replace (callers that read-modify-write use update)
function M.save(root, st)
  local ok, err = fs.write_atomic(file(root), cjson.encode(st))
  if not ok then error("simulated host state: cannot write " .. file(root) .. ": " .. tostring(err), 0) end
  return true
end

-- update(root, fn) -> fn(st)'s results; fn runs under the lock with the current state, which is saved after it
-- returns (unless it raises).
function M.update(root, fn)
  return util.with_lock(root .. M.DIR, function()
    local st, err = M.load(root)
    if not st then error(err, 0) end
    local res = table.pack(fn(st))
    M.save(root, st)
    return table.unpack(res, 1, res.n)
  end)
end

-- Appends a kernel message (dmesg) with a monotonic timestamp since boot.
function M.dmesg(st, line)
  local now = math.floor(util.time())
  local t = now - (st.host.boot_time or now)
  local last = st.dmesg[#st.dmesg]
  if last and last.t >= t then t = last.t + 0.005123 end
  st.dmesg[#st.dmesg + 1] = { t = t + (#st.dmesg % 1000) / 1e6, line = line }
end

-- Appends a journal entry for unit.
function M.journal(st, unit, ident, pid, msg)
  st.journal[#st.journal + 1] = { t = math.floor(util.time()), unit = unit, ident = ident, pid = pid, msg = msg }
end

-- Allocates a process id for a simulated process.
function M.pid(st)
  st.next_pid = st.next_pid + math.random(3, 40)
  return st.next_pid
end

return M
