-- nd.rules.allocator — causes in the output of nitro-enclaves-allocator.service (systemctl status, journalctl):
-- the script's own `Error: …` lines (bootstrap/nitro-enclaves-allocator in aws-nitro-enclaves-cli), the driver not
-- inserted, hugepages that one NUMA node cannot hold, and a "success" printed after a failure.
local function err_line(f)
  return f:line("Error: (.+)$")
end

return { area = "allocator", rules = {
  { id = "alloc-driver-missing", finding = "ALLOCATOR_DRIVER_MISSING", confidence = 0.95,
    match = function(f)
      local l = f:line("Nitro Enclaves driver is inserted") or f:line("CPU pool file is missing")
        or (f:has("nitro-enclaves-allocator") and (f:line("line %d+: /sys/module/nitro_enclaves/parameters/ne_cpus: No such file")
          or (f:line("status=1/FAILURE") and f:line("nitro%-enclaves%-allocator: line %d+: /sys/module/nitro_"))))
      if l then return { evidence = { l } } end
    end },
  { id = "alloc-cpu-busy", finding = "ALLOCATOR_CPU_POOL_BUSY", confidence = 0.95,
    match = function(f)
      local l = f:line("Could not re%-online CPUs") or f:line("enclave currently running")
      if l then return { evidence = { l } } end
    end },
  { id = "alloc-numa-memory", finding = "ALLOCATOR_NUMA_MEMORY", confidence = 0.9,
    match = function(f)
      local l = f:line("Failed to configure entire amount of requested memory") or f:line("Failed to set a number of huge pages")
        or f:line("insufficient system resources")
      if l then
        local mem = f.text:match("reserve (%d+) MB of memory") or f.text:match("memory_mib:%s*(%d+)")
        return { vars = { memory_mib = mem }, evidence = { l, f:line("Will try to reserve") } }
      end
    end },
  { id = "alloc-false-success", finding = "ALLOCATOR_FAILED_REPORTED_SUCCESS", confidence = 0.85,
    match = function(f)
      -- the script printed its reservations; their sum is below the request, yet the service succeeded
      local want = tonumber(f.text:match("reserve (%d+) MB of memory"))
      local ok = f:line("status=0/SUCCESS") or f:line("Successfully allocated Nitro Enclaves resources")
      if not (want and ok) then return nil end
      local got = 0
      for n, kb in f.text:gmatch("Reserved (%d+) pages of type: (%d+)kB") do got = got + tonumber(n) * tonumber(kb) // 1024 end
      if got < want or f:has("Memory configuration failed") then
        return { vars = { reserved_mib = got, memory_mib = want },
                 evidence = { f:line("Will try to reserve"), string.format("reserved %d MiB in all", got),
                              f:line("Memory configuration failed"), ok } }
      end
    end },
  { id = "alloc-config", finding = "ALLOCATOR_CONFIG", confidence = 0.9,
    match = function(f)
      local l, e = f:line("Error: (Error in .+)$")
      if not l then l, e = f:line("Error: (Config error: .+)$") end
      if not l then l, e = f:line("(The CPU count is not multiple of .+)$") end
      if not l then l, e = f:line("(Provided CPU count is .+)$") end
      if l then return { vars = { detail = "nitro-enclaves-allocator.service: " .. e }, evidence = { l } } end
    end },
  { id = "alloc-script-bug", finding = "ALLOCATOR_SCRIPT_BUG", confidence = 0.9,
    match = function(f)
      local l, what = f:line("nitro%-enclaves%-allocator: line %d+: ([%w_%-]+: command not found)")
      if not l then l, what = f:line("nitro%-enclaves%-allocator: line %d+: (syntax error.*)$") end
      if l then return { vars = { detail = what }, evidence = { l } } end
    end },
  { id = "alloc-failed", finding = "ALLOCATOR_FAILED", confidence = 0.6,
    match = function(f)
      local l, e = err_line(f)
      if l and f.kinds.allocator then return { vars = { error = e }, evidence = { l } } end
      l = f:line("nitro%-enclaves%-allocator%.service: Main process exited, code=exited") or f:line("Failed to start Nitro Enclaves Resource Allocator")
      if l then return { vars = { error = l }, evidence = { l, f:line("status=%d+") } } end
    end },
} }
