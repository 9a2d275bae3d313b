-- nd.sim.allocator — the simulated nitro-enclaves-allocator.service (a oneshot on real hosts): reads
-- /etc/nitro_enclaves/allocator.yaml under the sim root, reserves hugepage memory and the CPU pool, writes what the
-- real allocator leaves behind (ne_cpus, nr_hugepages) and logs to the service journal. The configuration is parsed
-- by nd.allocator (the one parser of allocator.yaml).
local fs = require "nd.fs"
local st_mod = require "nd.sim.state"

local M = {}

M.UNIT = "nitro-enclaves-allocator.service"
M.FILE = "/etc/nitro_enclaves/allocator.yaml"

-- parse(text) -> { memory_mib = n, cpu_count = n | nil, cpu_pool = {ids} | nil } | nil, message (the service's
-- own message, e.g. "Error in /etc/nitro_enclaves/allocator.yaml:4 - unexpected: memroy"). nd.allocator is the one
-- parser of allocator.yaml; this only keeps what the service acts on.
function M.parse(text)
  local cfg, err = require("nd.allocator").parse(text, M.FILE)
  if not cfg then return nil, err end
  if not cfg.memory_mib then return nil, "Config error: missing memory reservation (`memory_mib`)." end
  if not cfg.cpu_count and not cfg.pool_cpus then return nil, "Config error: missing CPU reservation (`cpu_count` or `cpu_pool`)." end
  return { memory_mib = cfg.memory_mib, cpu_count = cfg.cpu_count, cpu_pool = cfg.pool_cpus }
end

-- The sibling threads of cpu on this host (Linux numbering on EC2: core c = {c, c + cores, …}).
local function core_of(h, cpu)
  local cores = h.cpus // h.threads_per_core
  return cpu % cores
end

local function core_threads(h, core)
  local cores = h.cpus // h.threads_per_core
  local t = {}
  for i = 0, h.threads_per_core - 1 do t[#t + 1] = core + i * cores end
  return t
end

-- pool(host, cfg) -> sorted CPU ids | nil, message, kernel_lines (the allocator's CPU selection rules; kernel_lines:
-- what the driver logs when it refuses the pool)
function M.pool(h, cfg)
  local cores = h.cpus // h.threads_per_core
  if cfg.cpu_count then
    if cfg.cpu_count % h.threads_per_core ~= 0 then
      return nil, string.format("Error: cpu_count (%d) must be a multiple of the number of threads per core (%d).",
        cfg.cpu_count, h.threads_per_core)
    end
    local need = cfg.cpu_count // h.threads_per_core
    if need > cores - 1 then
      return nil, string.format("Error: cannot allocate %d CPUs: only %d CPUs can be offered to enclaves "
        .. "(CPU 0 and its siblings stay with the parent instance).", cfg.cpu_count, (cores - 1) * h.threads_per_core)
    end
    local ids = {}
    for c = 1, need do for _, t in ipairs(core_threads(h, c)) do ids[#ids + 1] = t end end
    table.sort(ids)
    return ids
  end
  local seen = {}
  for _, id in ipairs(cfg.cpu_pool) do
    if id >= h.cpus then
      return nil, string.format("Error: CPU %d does not exist on this instance.", id),
        { "nitro_enclaves: Error in cpulist parse [rc=-22]" }
    end
    if id == 0 then
      return nil, "Error: CPU 0 cannot be used: CPU 0 and its siblings stay with the parent instance.",
        { "nitro_enclaves: CPU 0 has to remain available" }
    end
    if core_of(h, id) == 0 then
      return nil, string.format("Error: CPU %d cannot be used: CPU 0 and its siblings stay with the parent instance.", id),
        { string.format("nitro_enclaves: CPU sibling %d for CPU 0 is in CPU pool", id) }
    end
    seen[id] = true
  end
  for id in pairs(seen) do
    for _, t in ipairs(core_threads(h, core_of(h, id))) do
      if not seen[t] then
        return nil, string.format("Error: the CPU pool must contain full CPU cores: CPU %d is missing (sibling of CPU %d).", t, id),
          { string.format("nitro_enclaves: CPU %d is not in CPU pool", t) }
      end
    end
  end
  local ids = {}
  for id in pairs(seen) do ids[#ids + 1] = id end
  table.sort(ids)
  return ids
end

local function running(st)
  local now = math.floor(require("nd.sim.util").time())
  for _, e in ipairs(st.enclaves) do
    if not (e.plan and e.plan.stops_after and now >= e.started + e.plan.stops_after + 1) then return true end
  end
  return false
end

local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- Writes what the allocator leaves on the host: ne_cpus and the hugepage counters.
function M.write_sys(root, st)
  local h = st.host
  if h.driver then
    fs.write(root .. "/sys/module/nitro_enclaves/parameters/ne_cpus",
      (#st.allocator.cpus > 0 and table.concat(st.allocator.cpus, ",") or "") .. "\n")
  end
  local pages = st.allocator.memory_mib // 2
  fs.write(root .. "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", pages .. "\n")
  local used = 0
  for _, e in ipairs(st.enclaves) do used = used + e.memory_mib end
  fs.write(root .. "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", math.max(0, (st.allocator.memory_mib - used) // 2) .. "\n")
  fs.write(root .. "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "0\n")
  -- /proc/meminfo as the kernel prints it (the lines runbooks grep)
  local total = h.memory_mib * 1024
  local free_pages = math.max(0, (st.allocator.memory_mib - used) // 2)
  local lines = {
    string.format("%-16s%8d kB", "MemTotal:", total),
    string.format("%-16s%8d kB", "MemFree:", math.max(0, total - st.allocator.memory_mib * 1024 - 1433600)),
    string.format("%-16s%8d kB", "MemAvailable:", math.max(0, total - st.allocator.memory_mib * 1024 - 1024000)),
    string.format("%-16s%8d kB", "AnonHugePages:", 0),
    string.format("%-16s%8d kB", "ShmemHugePages:", 0),
    string.format("%-16s%8d kB", "FileHugePages:", 0),
    string.format("HugePages_Total:   %5d", pages),
    string.format("HugePages_Free:    %5d", free_pages),
    string.format("HugePages_Rsvd:    %5d", 0),
    string.format("HugePages_Surp:    %5d", 0),
    string.format("%-16s%8d kB", "Hugepagesize:", 2048),
    string.format("%-16s%8d kB", "Hugetlb:", pages * 2048),
  }
  fs.mkdir_p(root .. "/proc")
  fs.write(root .. "/proc/meminfo", table.concat(lines, "\n") .. "\n")
end

local function finish(st, svc, ok, msg, pid)
  svc.since = math.floor(require("nd.sim.util").time())
  svc.pid = pid
  svc.active = ok and "active" or "failed"
  svc.result = ok and "success" or "exit-code"
  return { ok = ok, message = msg }
end

-- start(root, st) -> { ok, message }: runs the allocator with the current allocator.yaml (state st is modified;
-- the caller saves it).
function M.start(root, st)
  local svc = st.services[M.UNIT]
  local pid = st_mod.pid(st)
  local log = function(m) st_mod.journal(st, M.UNIT, "nitro-enclaves-allocator", pid, m) end
  st_mod.journal(st, M.UNIT, "systemd", 1, "Starting Nitro Enclaves Resource Allocator...")
  if not st.host.driver then
    local m = "Error: the nitro_enclaves driver is not loaded (modprobe nitro_enclaves failed)."
    log(m)
    st_mod.journal(st, M.UNIT, "systemd", 1, M.UNIT .. ": Main process exited, code=exited, status=1/FAILURE")
    st_mod.journal(st, M.UNIT, "systemd", 1, M.UNIT .. ": Failed with result 'exit-code'.")
    st_mod.journal(st, M.UNIT, "systemd", 1, "Failed to start Nitro Enclaves Resource Allocator.")
    return finish(st, svc, false, m, pid)
  end
  local text = fs.read(root .. M.FILE)
  local cfg, err
  if not text then err = "Error: cannot read " .. M.FILE else cfg, err = M.parse(text) end
  local cpus, klines
  if cfg then cpus, err, klines = M.pool(st.host, cfg) end
  if cfg and cpus and cfg.memory_mib > st.host.memory_mib - 512 then
    cpus, err = nil, string.format("Error: cannot reserve %d MiB of hugepage memory: the instance has %d MiB.",
      cfg.memory_mib, st.host.memory_mib)
  end
  if cpus and running(st) and (not same(cpus, st.allocator.cpus) or cfg.memory_mib < st.allocator.memory_mib) then
    cpus, err = nil, "Error: an enclave is running; its CPUs and memory cannot be released (terminate it first: nitro-cli terminate-enclave --all)."
    klines = { "nitro_enclaves: The CPU pool is used by enclave(s)" }
  elseif not cpus and klines then
    klines[#klines + 1] = "nitro_enclaves: Error in setup CPU pool [rc=-22]"
  end
  for _, l in ipairs(klines or {}) do st_mod.dmesg(st, l) end
  if not cpus then
    log(err)
    st_mod.journal(st, M.UNIT, "systemd", 1, M.UNIT .. ": Main process exited, code=exited, status=1/FAILURE")
    st_mod.journal(st, M.UNIT, "systemd", 1, M.UNIT .. ": Failed with result 'exit-code'.")
    st_mod.journal(st, M.UNIT, "systemd", 1, "Failed to start Nitro Enclaves Resource Allocator.")
    return finish(st, svc, false, err, pid)
  end
  st.allocator.memory_mib = cfg.memory_mib
  st.allocator.cpus = cpus
  M.write_sys(root, st)
  local m = string.format("Successfully allocated Nitro Enclaves resources: %d MiB, %d CPUs", cfg.memory_mib, #cpus)
  log(m)
  st_mod.journal(st, M.UNIT, "systemd", 1, "Finished Nitro Enclaves Resource Allocator.")
  return finish(st, svc, true, m, pid)
end

-- stop(root, st) -> { ok, message }: releases the reservation (refused while an enclave runs).
function M.stop(root, st)
  local svc = st.services[M.UNIT]
  if running(st) then
    local m = "Error: an enclave is running; its CPUs and memory cannot be released (terminate it first: nitro-cli terminate-enclave --all)."
    st_mod.dmesg(st, "nitro_enclaves: The CPU pool is used by enclave(s)")
    st_mod.journal(st, M.UNIT, "nitro-enclaves-allocator", st_mod.pid(st), m)
    svc.active = "failed"
    svc.result = "exit-code"
    return { ok = false, message = m }
  end
  st.allocator.memory_mib = 0
  st.allocator.cpus = {}
  M.write_sys(root, st)
  st_mod.journal(st, M.UNIT, "systemd", 1, "Stopping Nitro Enclaves Resource Allocator...")
  st_mod.journal(st, M.UNIT, "systemd", 1, M.UNIT .. ": Deactivated successfully.")
  st_mod.journal(st, M.UNIT, "systemd", 1, "Stopped Nitro Enclaves Resource Allocator.")
  svc.active = "inactive"
  svc.result = "success"
  svc.since = math.floor(require("nd.sim.util").time())
  return { ok = true, message = "" }
end

return M
