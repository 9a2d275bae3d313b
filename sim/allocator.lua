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

-- script_parse(text) -> config | nil, message: allocator.yaml read the way the real script reads it
-- (bootstrap/nitro-enclaves-allocator, parse_config, v1.5.0 lines 99-131): `while read line` (leading/trailing
-- blanks trimmed, a last line without newline never read, a CRLF "---\r" never equals "---" so nothing after it is
-- read), comment lines skipped, lines before "---" skipped, key = the leading [-_a-z0-9] run (any case) before the
-- first ':', value = the text after the LAST ':' with its first blank run and a leading quote removed and a trailing
-- quote dropped (so "512 # note: x" gives "x"); an unknown key — a blank line's empty key too — fails with
-- "Error in FILE:N - unexpected: KEY". Values stay strings, as in bash.
function M.script_parse(text)
  local cfg = {}
  local count, skip = 0, true
  local pos = 1
  while true do
    local nl = text:find("\n", pos, true)
    if not nl then break end -- `read` fails on a last line without newline: the loop ends
    local line = text:sub(pos, nl - 1)
    pos = nl + 1
    count = count + 1
    line = line:gsub("\\(.)", "%1"):gsub("^[ \t]+", ""):gsub("[ \t]+$", "")
    if line:match("^%s*#") then goto next end
    if line == "---" then skip = false goto next end
    if skip then goto next end
    do
      local key = (line:match("^([^:]*)") or ""):match("^[-_%w]+") or ""
      if key:find("[^-_%w]") then key = "" end
      if key ~= "memory_mib" and key ~= "cpu_count" and key ~= "cpu_pool" then
        return nil, string.format("Error in %s:%d - unexpected: %s", M.FILE, count, key)
      end
      local value = line:match("^.+:(.*)$") or line
      value = value:gsub("%s+\"?", "", 1):gsub("\"$", "")
      if value == "" then return nil, string.format("Error in %s:%d - missing value for %s", M.FILE, count, key) end
      cfg[key] = value
    end
    ::next::
  end
  if not cfg.memory_mib then return nil, "Config error: missing memory reservation (`memory_mib`)." end
  if not cfg.cpu_count and not cfg.cpu_pool then
    return nil, "Config error: missing CPU reservation (either `cpu_count` or `cpu_pool`)."
  end
  if cfg.cpu_count and cfg.cpu_pool then return nil, "Config error: `cpu_count` conflicts with `cpu_pool`." end
  return cfg
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
  local gp = (st.allocator.pages or {})["1048576kB"] or 0
  local pages = st.allocator.pages and (st.allocator.pages["2048kB"] or 0) or st.allocator.memory_mib // 2
  fs.write(root .. "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", pages .. "\n")
  local used = 0
  for _, e in ipairs(st.enclaves) do used = used + e.memory_mib end
  -- enclaves take the large pages first (nitro-cli's ResourceAllocator)
  local used_g = math.min(gp, used // 1024)
  local used_small = math.max(0, used - used_g * 1024)
  fs.write(root .. "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", math.max(0, pages - (used_small + 1) // 2) .. "\n")
  fs.write(root .. "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", gp .. "\n")
  fs.write(root .. "/sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages", (gp - used_g) .. "\n")
  -- /proc/meminfo as the kernel prints it (the lines runbooks grep)
  local total = h.memory_mib * 1024
  local free_pages = math.max(0, pages - (used_small + 1) // 2)
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

-- Hugepage reservation as set_required_hugepages does it: the largest page size first, as many pages as fit without
-- exceeding the request, the smallest size for the rest; free_mib (the NUMA node's free memory) limits what the
-- kernel grants. Returns { {key, pages}, … }, reserved MiB, the journal lines.
local PAGE_SIZES = { { key = "1048576kB", mib = 1024 }, { key = "2048kB", mib = 2 } }
local function reserve(h, memory, free_mib)
  local remaining = ((memory + 1) // 2) * 2 -- a multiple of the smallest page size
  local lines, pages, got = {}, {}, 0
  local avail = free_mib
  for _, ps in ipairs(PAGE_SIZES) do
    if ps.key ~= "1048576kB" or h.gigantic_pages ~= false then
      local want = remaining // ps.mib
      local n = math.min(want, avail // ps.mib)
      if n > 0 then lines[#lines + 1] = string.format("- Reserved %d pages of type: %s.", n, ps.key) end
      pages[#pages + 1] = { key = ps.key, pages = n }
      remaining = remaining - n * ps.mib
      avail = avail - n * ps.mib
      got = got + n * ps.mib
      if remaining == 0 then break end
    end
  end
  return pages, got, lines, remaining
end

-- start(root, st) -> { ok, message }: runs the allocator script with the current allocator.yaml (state st is
-- modified; the caller saves it). Its journal carries the script's own lines in its order (v1.5.0): "Auto-generating
-- the enclave CPU pool by using the CPU count...", "Will try to reserve N MB of memory on node 0.", "Configuring the
-- huge page memory...", "- Reserved N pages of type: 2048kB.", "Done.", "Auto-generated the enclave CPU pool: 1,3.",
-- "Configuring the enclave CPU pool...", "Done.", "Successfully allocated Nitro Enclaves resources: 512 MiB, 2 CPUs"
-- (cpu_pool: the pool first, then the memory, "…: 1024 MiB, CPU pool: 1,3"); failures "Error: …". A host with
-- `allocator_script = "2021"` (before aws-nitro-enclaves-cli PR #315) reports success after reserving only part.
function M.start(root, st)
  local svc = st.services[M.UNIT]
  local h = st.host
  local pid = st_mod.pid(st)
  local log = function(m) st_mod.journal(st, M.UNIT, "nitro-enclaves-allocator", pid, m) end
  st_mod.journal(st, M.UNIT, "systemd", 1, "Starting Nitro Enclaves Resource Allocator...")
  local function failed(m, klines)
    for _, l in ipairs(klines or {}) do st_mod.dmesg(st, l) end
    log(m)
    st_mod.journal(st, M.UNIT, "systemd", 1, M.UNIT .. ": Main process exited, code=exited, status=1/FAILURE")
    st_mod.journal(st, M.UNIT, "systemd", 1, M.UNIT .. ": Failed with result 'exit-code'.")
    st_mod.journal(st, M.UNIT, "systemd", 1, "Failed to start Nitro Enclaves Resource Allocator.")
    return finish(st, svc, false, m, pid)
  end
  local text = fs.read(root .. M.FILE)
  if not text then return failed("/usr/bin/nitro-enclaves-allocator: line 122: " .. M.FILE .. ": No such file or directory") end
  local cfg, perr = M.script_parse(text)
  if not cfg then return failed("Error: " .. perr) end
  -- enable_offline_cpus: the driver refuses to re-online CPUs an enclave uses
  if running(st) then
    return failed("Error: Could not re-online CPUs because there is at least one enclave currently running. Make sure "
      .. "you stop all enclaves prior to re-starting the nitro-enclaves-allocator.service.",
      { "nitro_enclaves: The CPU pool is used by enclave(s)" })
  end
  local pool_file = h.driver
  local memory = tonumber(cfg.memory_mib) and cfg.memory_mib:match("^%d+$") and math.tointeger(tonumber(cfg.memory_mib))
  local cpus, cpu_msg, pool_text
  local free_mib = h.numa_free_mib or math.max(0, h.memory_mib - 1536)
  local reserved, pages, rest
  local function hugepages()
    log("Configuring the huge page memory...")
    if not memory then return "Error: The needed memory amount (" .. cfg.memory_mib .. ") is invalid." end
    local plines
    pages, reserved, plines, rest = reserve(h, memory, free_mib)
    for _, l in ipairs(plines) do log(l) end
    if rest > 0 and h.allocator_script ~= "2021" then
      log("Memory configuration failed, rolling back memory reservations...")
      return "Error: Failed to configure entire amount of requested memory. This indicates insufficient system resources."
    end
    log("Done.")
  end
  if cfg.cpu_count then
    if not pool_file then return failed("Error: The CPU pool file is missing. Please make sure the Nitro Enclaves driver is inserted.") end
    log("Auto-generating the enclave CPU pool by using the CPU count...")
    local n = cfg.cpu_count:match("^%d+$") and math.tointeger(tonumber(cfg.cpu_count))
    if not n then return failed("Error: The CPU count value (" .. cfg.cpu_count .. ") is invalid.") end
    if n <= 0 then return failed("Error: Provided CPU count is not higher than 0.") end
    if n > h.cpus then return failed(string.format("Error: Provided CPU count is higher than available CPUs - %d.", h.cpus)) end
    if n % h.threads_per_core ~= 0 then
      return failed(string.format("Error: The CPU count is not multiple of %d (threads per core).", h.threads_per_core))
    end
    local ids, perr2 = M.pool(h, { cpu_count = n })
    if not ids then
      return failed("Error: Failed to find suitable CPUs for the Nitro Enclaves CPU pool after checking all NUMA nodes.")
    end
    log(string.format("Will try to reserve %s MB of memory on node 0.", cfg.memory_mib))
    local herr = hugepages()
    if herr then return failed(herr) end
    cpus = ids
    pool_text = table.concat(ids, ",")
    log("Auto-generated the enclave CPU pool: " .. pool_text .. ".")
    log("Configuring the enclave CPU pool...")
    log("Done.")
    cpu_msg = n .. " CPUs"
    local _ = perr2
  else
    if not pool_file then return failed("Error: The CPU pool file is missing. Please make sure the Nitro Enclaves driver is inserted.") end
    log("Configuring the enclave CPU pool...")
    local list = require("nd.allocator").parse_cpu_list and require("nd.allocator").parse_cpu_list(cfg.cpu_pool)
    local ids, perr3, klines
    if list then ids, perr3, klines = M.pool(h, { cpu_pool = list }) end
    if not ids then
      local kl = klines or { "nitro_enclaves: Error in cpulist parse [rc=-22]" }
      kl[#kl + 1] = "nitro_enclaves: Error in setup CPU pool [rc=-22]"
      local _ = perr3
      return failed("/usr/bin/nitro-enclaves-allocator: line 150: echo: write error: Invalid argument\nError: Failed to configure the CPU pool.", kl)
    end
    log("Done.")
    local herr = hugepages()
    if herr then return failed(herr) end
    cpus = ids
    cpu_msg = "CPU pool: " .. cfg.cpu_pool
  end
  st.allocator.memory_mib = reserved
  st.allocator.pages = {}
  for _, p in ipairs(pages) do st.allocator.pages[p.key] = p.pages end
  st.allocator.cpus = cpus
  M.write_sys(root, st)
  local m = string.format("Successfully allocated Nitro Enclaves resources: %s MiB, %s", cfg.memory_mib, cpu_msg)
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
