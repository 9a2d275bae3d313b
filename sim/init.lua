-- nd.sim — the simulated Nitro host. activate() turns a scenario (a data file under sim/scenarios/, or any path)
-- into a host root in a temporary directory, exactly as a real parent instance looks to nitrodiag:
--
--   <root>/etc/nitro_enclaves/allocator.yaml        the scenario's allocator configuration
--   <root>/var/log/nitro_enclaves/                    err<RFC3339>.log files and nitro_enclaves.log
--   <root>/dev/nitro_enclaves                          present unless the scenario has no driver
--   <root>/sys/module/nitro_enclaves/parameters/ne_cpus, <root>/sys/kernel/mm/hugepages/…  what the allocator left
--   <root>/var/lib/nitrodiag-sim/state.json            enclaves, images, services, journal, dmesg (nd.sim.state)
--   <root>/bin/{nitro-cli,systemctl,docker,dmesg,journalctl}  links to the nitrodiag binary (nd.sim.main)
--
-- It puts <root>/bin first in PATH, sets NITRODIAG_SIM_ROOT (how the stand-ins find the state) and calls
-- nd.host.set_root(root), so runbooks run unchanged against it; nd.vsock's connect/ping reach the simulated
-- enclaves (nd.sim.vsock). sim:close() undoes all of it.
--
-- Enclaves are "booted" by a backend (nd.sim.backend): today the stand-in, which plays what enclave/init and the
-- test applications print; a later backend can boot the EIF for real under qemu behind the same interface.
local uv = require "luv"
local fs = require "nd.fs"
local host = require "nd.host"
local state = require "nd.sim.state"
local allocator = require "nd.sim.allocator"

local M = {}

M.TOOLS = { "nitro-cli", "systemctl", "docker", "dmesg", "journalctl" }

-- the clock of new hosts: 0 = advanced by the simulator (nd.sim.clock), 1 = wall-clock pacing (`--sim-realtime`,
-- NITRODIAG_SIM_SPEED=1, activate(name, { time_scale = 1 })); the qemu backend always runs in real time
M.default_time_scale = 0

local SCENARIO_KEYS = {
  name = "string", description = "string", host = "table", allocator_yaml = "string", allocator = "table",
  files = "table",
  env = "table", images = "table", eifs = "table", enclaves = "table", services = "table", dmesg = "table",
  backend = "string", extends = "string", workload = "table",
}

-- Where the operator's workload is described on a host (simulated or real): one nitro-cli `run-enclave --config`
-- JSON per enclave (eif_path, memory_mib, cpu_count | cpu_ids, debug_mode, enclave_name), optionally with
-- docker_uri and docker_dir (the image and its build context). diag10 runs what it finds there (workload=).
M.WORKLOAD_DIR = "/etc/nitrodiag/workload.d"

-- merge(base, over): maps merge key by key (over wins), lists append (base first), other values: over wins
local function merge(base, over)
  if type(base) ~= "table" or type(over) ~= "table" then
    if over == nil then return base end
    return over
  end
  local out = {}
  local blist, olist = #base > 0, #over > 0
  if blist or olist then
    for _, v in ipairs(base) do out[#out + 1] = v end
    for _, v in ipairs(over) do out[#out + 1] = v end
  end
  for k, v in pairs(base) do if type(k) ~= "number" then out[k] = v end end
  for k, v in pairs(over) do if type(k) ~= "number" then out[k] = merge(base[k], v) end end
  return out
end

-- Directories where scenarios are looked up by name, in order.
function M.scenario_dirs()
  local dirs = {}
  local src = os.getenv("ND_SOURCE_DIR")
  if src and src ~= "" then dirs[#dirs + 1] = src .. "/sim/scenarios" end
  local ok, sd = pcall(host.source_dir)
  if ok and sd and sd ~= "" then dirs[#dirs + 1] = sd .. "/sim/scenarios" end
  dirs[#dirs + 1] = host.share_dir() .. "/scenarios"
  return dirs
end

-- find(name_or_path) -> path | nil, err
function M.find(name)
  name = name or "healthy"
  local p, why = fs.find_lua(name, M.scenario_dirs())
  if p then return p end
  if why == "missing" then return nil, "scenario file not found: " .. name end
  if why == "bad name" then return nil, "bad scenario name: " .. name end
  return nil, "unknown scenario: " .. name .. " (see `nitrodiag sim`; looked in "
    .. table.concat(M.scenario_dirs(), ", ") .. ")"
end

-- load(name_or_path) -> scenario table (validated, with .name and .path; `extends` resolved) | nil, err
function M.load(name, seen)
  local path, err = M.find(name)
  if not path then return nil, err end
  seen = seen or {}
  local real = uv.fs_realpath(path) or path
  if seen[real] then return nil, "scenario " .. path .. ": extends itself (a cycle)" end
  seen[real] = true
  local chunk, lerr = loadfile(path, "t", {})
  if not chunk then return nil, "scenario " .. path .. ": " .. lerr end
  local ok, sc = pcall(chunk)
  if not ok then return nil, "scenario " .. path .. ": " .. tostring(sc) end
  if type(sc) ~= "table" then return nil, "scenario " .. path .. ": must return a table" end
  for k, v in pairs(sc) do
    if not SCENARIO_KEYS[k] then return nil, "scenario " .. path .. ": unknown key '" .. tostring(k) .. "'" end
    if type(v) ~= SCENARIO_KEYS[k] then
      return nil, string.format("scenario %s: '%s' must be a %s", path, k, SCENARIO_KEYS[k])
    end
  end
  if not sc.description then return nil, "scenario " .. path .. ": missing 'description'" end
  if sc.workload and #sc.workload == 0 then sc.workload = { sc.workload } end
  for i, w in ipairs(sc.workload or {}) do
    if type(w) ~= "table" or type(w.eif) ~= "string" or not w.eif:match("^/") then
      return nil, string.format("scenario %s: workload %d needs eif = an absolute host path", path, i)
    end
  end
  local own_name = sc.name or fs.basename(path):gsub("%.lua$", "")
  if sc.extends then
    -- a scenario extends another (looked up like any scenario, relative paths beside this file)
    local base_name = sc.extends
    if base_name:match("%.lua$") and not base_name:match("^/") then base_name = fs.dirname(path) .. "/" .. base_name end
    local base, berr = M.load(base_name, seen)
    if not base then return nil, "scenario " .. path .. ": extends " .. sc.extends .. ": " .. tostring(berr) end
    local description, own_workload = sc.description, sc.workload
    sc = merge(base, sc)
    sc.description, sc.extends = description, nil
    if own_workload then sc.workload = own_workload end -- a workload replaces the base's (it is the operator's)
  end
  sc.name = own_name
  sc.path = path
  return sc
end

-- scenarios() -> sorted list of { name, description, path } from every scenario directory (first one wins)
function M.scenarios()
  local seen, out = {}, {}
  for _, d in ipairs(M.scenario_dirs()) do
    for _, f in ipairs(fs.list(d) or {}) do
      local n = f:match("^(.+)%.lua$")
      if n and not seen[n] then
        seen[n] = true
        local sc = M.load(d .. "/" .. f)
        out[#out + 1] = { name = n, description = sc and sc.description or "(invalid scenario)", path = d .. "/" .. f }
      end
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

local Sim = {}
Sim.__index = Sim

local function mkdirs(root, list)
  for _, d in ipairs(list) do
    local ok, err = fs.mkdir_p(root .. d)
    if not ok then return nil, err end
  end
  return true
end

M.NE_GID = 994
M.VSOCK_PROXY_YAML = [[
allowlist:
- {address: kms.us-east-1.amazonaws.com, port: 443}
- {address: kms-fips.us-east-1.amazonaws.com, port: 443}
- {address: kms.us-east-2.amazonaws.com, port: 443}
- {address: kms.us-west-2.amazonaws.com, port: 443}
- {address: kms.eu-west-1.amazonaws.com, port: 443}
- {address: kms.eu-central-1.amazonaws.com, port: 443}
- {address: kms.ap-northeast-1.amazonaws.com, port: 443}
]]

-- Builds the host root for scenario sc under root. Returns true | nil, err.
local function build(root, sc, opts)
  local h = sc.host or {}
  local ok, err = mkdirs(root, { "/etc/nitro_enclaves", "/var/log/nitro_enclaves", "/var/lib/nitrodiag-sim",
    "/var/run/nitro_enclaves", "/sys/module/nitro_enclaves/parameters", "/dev", "/bin", "/home/ec2-user",
    "/sys/kernel/mm/hugepages/hugepages-2048kB", "/sys/kernel/mm/hugepages/hugepages-1048576kB" })
  if not ok then return nil, err end
  if h.driver == false then
    uv.fs_rmdir(root .. "/sys/module/nitro_enclaves/parameters")
    uv.fs_rmdir(root .. "/sys/module/nitro_enclaves")
  else
    fs.write(root .. "/dev/nitro_enclaves", "")
  end
  fs.write(root .. "/etc/nitro_enclaves/allocator.yaml",
    sc.allocator_yaml or "---\n# Enclave configuration file.\nmemory_mib: 512\ncpu_count: 2\n")
  -- What installing aws-nitro-enclaves-cli leaves on a host: the `ne` group owning the device, and the vsock-proxy
  -- allowlist with the KMS endpoints.
  fs.write(root .. "/etc/group", "root:x:0:\nwheel:x:10:ec2-user\nne:x:" .. M.NE_GID .. ":ec2-user\nec2-user:x:1000:\n")
  if h.driver ~= false then
    uv.fs_chown(root .. "/dev/nitro_enclaves", 0, M.NE_GID)
    uv.fs_chmod(root .. "/dev/nitro_enclaves", tonumber("660", 8))
  end
  fs.write(root .. "/etc/nitro_enclaves/vsock-proxy.yaml", M.VSOCK_PROXY_YAML)
  -- The scenario's own files: path -> contents, or false to remove a default one.
  for path, content in pairs(sc.files or {}) do
    if type(path) ~= "string" or path:sub(1, 1) ~= "/" or path:find("%.%.") then
      return nil, "files: paths must be absolute host paths without '..': " .. tostring(path)
    end
    if content == false then
      fs.rm_rf(root .. path)
    else
      local dok, derr = fs.mkdir_p(fs.dirname(root .. path))
      if not dok then return nil, derr end
      fs.write(root .. path, tostring(content))
    end
  end
  fs.write(root .. "/var/log/nitro_enclaves/nitro_enclaves.log", "")
  local exe = host.exe()
  for _, t in ipairs(M.TOOLS) do
    local lok, lerr = uv.fs_symlink(exe, root .. "/bin/" .. t)
    if not lok then return nil, "cannot link " .. t .. ": " .. tostring(lerr) end
  end
  local st = state.new(sc, opts)
  state.save(root, st)
  -- The allocator service ran at boot (when the scenario says it is active): reserve memory and CPUs.
  local a = sc.allocator or {}
  if (a.state or "active") == "active" then
    local res = allocator.start(root, st)
    if not res.ok and a.state == "active" then return nil, "scenario allocator: " .. res.message end
  else
    st.services["nitro-enclaves-allocator.service"].active = a.state
  end
  state.save(root, st)
  -- EIF files and the enclaves already running (stale ones hold CPUs and memory).
  local nitro = require "nd.sim.nitro_cli"
  for _, e in ipairs(sc.eifs or {}) do
    local wok, werr = nitro.make_eif(root, st, e)
    if not wok then return nil, werr end
  end
  for _, e in ipairs(sc.enclaves or {}) do
    local eok, eerr = nitro.preload_enclave(root, st, e)
    if not eok then return nil, eerr end
  end
  -- The operator's workload: its EIF (from its image) and its run description where diag10 looks for it.
  for i, w in ipairs(sc.workload or {}) do
    if w.image and not fs.exists(root .. w.eif) then
      local wok, werr = nitro.make_eif(root, st, { path = w.eif, image = w.image, size_mib = w.size_mib })
      if not wok then return nil, "workload: " .. tostring(werr) end
    end
    local name = w.name or fs.basename(w.eif):gsub("%.eif$", "")
    local kv = { "eif_path", w.eif, "memory_mib", w.memory or 1024 }
    if w.cpu_ids then kv[#kv + 1] = "cpu_ids" kv[#kv + 1] = w.cpu_ids else kv[#kv + 1] = "cpu_count" kv[#kv + 1] = w.cpu_count or 2 end
    for _, k in ipairs({ { "debug_mode", w.debug }, { "enclave_name", w.enclave_name }, { "enclave_cid", w.cid },
      { "docker_uri", w.image }, { "docker_dir", w.context } }) do
      if k[2] ~= nil then kv[#kv + 1] = k[1] kv[#kv + 1] = k[2] end
    end
    local util = require "nd.sim.util"
    fs.mkdir_p(root .. M.WORKLOAD_DIR)
    fs.write(string.format("%s%s/%02d-%s.json", root, M.WORKLOAD_DIR, i, name), util.json(util.obj(kv)) .. "\n")
  end
  state.save(root, st)
  return true
end

-- activate(name_or_path [, opts]) -> sim | nil, err.  opts.keep = true leaves the root in place on close;
-- opts.root = dir builds into an existing empty directory instead of a new temporary one.
function M.activate(name, opts)
  opts = opts or {}
  local sc, err = M.load(name)
  if not sc then return nil, err end
  local bok, berr, bnote = require("nd.sim.backend").get(opts.backend or sc.backend)
  if not bok then return nil, "scenario " .. sc.name .. ": " .. berr end
  if bnote then
    -- the qemu backend cannot boot here: one line, then the scripted stand-in
    io.stderr:write("nitrodiag: ", bnote, "\n")
    local o2 = {}
    for k, v in pairs(opts) do o2[k] = v end
    o2.backend = bok.name
    opts = o2
  end
  local root = opts.root
  if root then
    local ok, merr = fs.mkdir_p(root)
    if not ok then return nil, merr end
  else
    root, err = fs.tmpdir("nitrodiag-sim")
    if not root then return nil, "cannot create the simulated host: " .. tostring(err) end
  end
  -- simulated time (docs/simulator.md): every process of the host reads the clock named in the environment. The
  -- clock starts before the host is built. Enclaves booted for real (qemu backend) run in real time.
  local realtime = tonumber(opts.time_scale or os.getenv("NITRODIAG_SIM_SPEED") or M.default_time_scale) == 1
    or bok.name == "qemu"
  local saved_clock = os.getenv("NITRODIAG_SIM_CLOCK")
  host.setenv("NITRODIAG_SIM_CLOCK", nil)
  if not realtime then
    local v, cerr = require("nd.sim.clock").init(root .. "/.nd-clock")
    if not v then
      if not opts.keep and not opts.root then fs.rm_rf(root) end
      return nil, "cannot create the simulated host's clock: " .. tostring(cerr)
    end
    host.setenv("NITRODIAG_SIM_CLOCK", v)
  end
  local ok, r1, r2 = pcall(build, root, sc, opts)
  if not ok or not r1 then
    host.setenv("NITRODIAG_SIM_CLOCK", saved_clock)
    if not opts.keep and not opts.root then fs.rm_rf(root) end
    return nil, "simulated host (" .. sc.name .. "): " .. tostring(ok and r2 or r1)
  end
  local self = setmetatable({ root = root, bin = root .. "/bin", scenario = sc.name, description = sc.description,
    scenario_path = sc.path, keep = opts.keep, saved = { NITRODIAG_SIM_CLOCK = { value = saved_clock } },
    realtime = realtime }, Sim)
  local function set(k, v)
    if self.saved[k] == nil then self.saved[k] = { value = os.getenv(k) } end
    host.setenv(k, v)
  end
  set("PATH", self.bin .. ":" .. (os.getenv("PATH") or "/usr/bin:/bin"))
  set("NITRODIAG_SIM_ROOT", root)
  set("NITRODIAG_SIM_OWNER", tostring(uv.os_getpid())) -- enclaves booted for real (qemu backend) die with us
  for k, v in pairs(sc.env or {}) do
    if v == false then set(k, nil) else set(k, tostring(v)) end
  end
  self.saved_root = host.root()
  host.set_root(root)
  -- nothing reaches the real host: commands run only from <root>/bin, nitro-cli is the simulated one
  self.saved_nitro_cli = host.nitro_cli()
  host.set_sim(root, 1) -- waits of this process follow nd.sim.clock, not a scale
  self.vsock_uninstall = require("nd.sim.vsock").install(root)
  self.eifs = {}
  for _, e in ipairs(sc.eifs or {}) do self.eifs[#self.eifs + 1] = root .. e.path end
  return self
end

-- sim:state() -> the current state table (enclaves, images, services…) read from disk
function Sim:state()
  return state.load(self.root)
end

-- sim:path(host_path) -> the path of a host file inside the simulated root
function Sim:path(p)
  return self.root .. p
end

-- sim:close(): restores PATH, the environment and the root, and removes the simulated host (unless keep).
function Sim:close()
  if self.closed then return end
  self.closed = true
  if self.vsock_uninstall then self.vsock_uninstall() end
  -- enclaves booted for real (qemu backend): their processes end with the simulated host
  local st = state.load(self.root)
  for _, e in ipairs(st and st.enclaves or {}) do
    if e.plan and e.plan.live then require("nd.sim.backend_qemu").stop(e.plan) end
  end
  host.set_sim(nil)
  if self.saved_nitro_cli then host.set_nitro_cli(self.saved_nitro_cli) end
  for k, s in pairs(self.saved) do host.setenv(k, s.value) end
  if self.saved_root then host.set_root(self.saved_root) end
  if not self.keep then fs.rm_rf(self.root) end
end

-- Closed deterministically: `local sim <close> = activate(…)` or sim:close(). No __gc: restoring PATH and removing
-- the root whenever the collector runs would change the environment under whoever runs then.
Sim.__close = Sim.close
Sim.__tostring = function(s) return "nd.sim(" .. s.scenario .. " at " .. s.root .. ")" end

return M
