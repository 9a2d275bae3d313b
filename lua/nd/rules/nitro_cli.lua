-- nd.rules.nitro_cli — causes behind nitro-cli's `[ Exx ]` blocks and err logs. Each rule reads the facts of
-- nd.diagnose (f.code: the root block's code, f.nf: its numbers, f.subactions: the err log's English sub-actions)
-- and names one cause of nd.findings. Checked against nitro-cli 1.5.0's source (src/enclave_proc/resource_manager.rs,
-- src/common/document_errors.rs, src/utils.rs). Generic per-code entries come last, at low confidence.
local errors = require "nd.nitro_errors"

local function ev(f, ...)
  local out = {}
  if f.root then out[#out + 1] = f.root.headline end
  for i = 1, select("#", ...) do local l = select(i, ...) if l then out[#out + 1] = l end end
  return out
end

-- The file and operation of an E19: nitro-cli's detail line "File: '<file>', failing operation: '<op>'."
-- (src/common/document_errors.rs, E19 only). The line alone identifies an E19 even when the `[ E19 ]` line above it
-- was not pasted, and a paste rewrapped at a width may break it after "File:".
local function e19(f, pat)
  if f.code and f.code ~= "E19" then return nil end
  local file, op = f.nf.file, f.nf.operation
  if not file then file, op = f.text:match("File:%s+'([^']+)',%s+failing operation:%s+'([^']+)'") end
  if not file and f.code == "E19" then file = f.text:match("File:%s+'([^']+)'") end
  if file and file:find(pat) then return file, op end
end

local rules = {
  { id = "e19-ne-cpus", finding = "DRIVER_NOT_LOADED", confidence = 0.9,
    match = function(f)
      local file, op = e19(f, "ne_cpus")
      if file then return { vars = { file = file, operation = op }, evidence = ev(f) } end
    end },
  { id = "e19-device-permission", finding = "NOT_IN_NE_GROUP", confidence = 0.9,
    match = function(f)
      local file, op = e19(f, "^/dev/nitro_enclaves")
      if file and (f:has("Permission denied") or f:has("os error 13") or f:has("EACCES") or f.host.in_ne_group == false) then
        return { vars = { file = file, operation = op }, evidence = ev(f, f:line("Permission denied")) }
      end
    end },
  { id = "e19-device-missing", finding = "DEVICE_MISSING", confidence = 0.8,
    match = function(f)
      local file, op = e19(f, "^/dev/nitro_enclaves")
      if file and not f:has("Permission denied") and f.host.in_ne_group ~= false then
        return { vars = { file = file, operation = op }, evidence = ev(f, f:line("No such file")) }
      end
    end },
  { id = "e19-log-file", finding = "LOG_FILE_NOT_WRITABLE", confidence = 0.85,
    match = function(f)
      local file = e19(f, "nitro_enclaves%.log") or e19(f, "^/var/log/nitro_enclaves")
      if file then return { vars = { file = file }, evidence = ev(f) } end
      if f.code == "E56" or f:has("Failed to open log file") then
        return { vars = { file = f.text:match("(/var/log/nitro_enclaves/[%w%._%-]+)") or "/var/log/nitro_enclaves/nitro_enclaves.log" },
                 evidence = ev(f, f:line("[Ll]og")) }
      end
    end },
  { id = "e19-blobs", finding = "EIF_BLOBS_MISSING", confidence = 0.9,
    -- build-enclave opens <blobs>/cmdline first (src/lib.rs build_from_docker; blobs from NITRO_CLI_BLOBS, default
    -- /usr/share/nitro_enclaves/blobs/, hence the "//"): the -devel package installs them (SPECS %files devel)
    match = function(f)
      local file, op = e19(f, "/cmdline$")
      if not file then file, op = e19(f, "/nitro_enclaves/blobs/") end
      local l = f:line("Could not open kernel command line file") or f:line("Failed to read kernel command line")
      if not file and l then file = "<blobs>/cmdline" end
      if file then
        return { vars = { file = file, operation = op or "Open", dir = file:match("^(.-)/+[^/]*$") or file },
                 evidence = ev(f, l) }
      end
    end },
  { id = "e19-eif", finding = "EIF_FILE_MISSING", confidence = 0.85,
    match = function(f)
      local file, op = e19(f, "%.eif$")
      if file then return { vars = { file = file, operation = op }, evidence = ev(f) } end
    end },
  { id = "e26-memory-below-eif", finding = "ENCLAVE_MEMORY_BELOW_EIF", confidence = 0.95,
    match = function(f)
      if f.code == "E26" then
        return { vars = { memory_mib = f.nf.memory_mib, min_memory_mib = f.nf.min_memory_mib }, evidence = ev(f) }
      end
    end },
  { id = "e27-allocator-too-small", finding = "ALLOCATOR_MEMORY_TOO_SMALL", confidence = 0.95,
    match = function(f)
      if f.code == "E27" then return { vars = { memory_mib = f.nf.memory_mib }, evidence = ev(f) } end
    end },
  { id = "e22-pool-too-small", finding = "CPU_POOL_TOO_SMALL", confidence = 0.9,
    match = function(f)
      if f.code == "E22" then return { vars = { cpu_count = f.nf.cpu_count }, evidence = ev(f) } end
    end },
  { id = "e21-cpu-not-in-pool", finding = "CPU_NOT_IN_POOL", confidence = 0.9,
    match = function(f)
      if f.code == "E21" then return { vars = { cpu_id = f.nf.cpu_id }, evidence = ev(f) } end
    end },
  -- E29: the driver's answer, in nitro-cli's English (resource_manager.rs do_ioctl), never NE_ERR_* names. Before
  -- `Start allocating memory...` E29 comes from the Create VM ioctl: no CPU of the pool is free. A listed enclave
  -- holds it (stale); right after an enclave exited the pool is still being released (transient).
  { id = "e29-stale-enclave", finding = "ENCLAVES_HOLD_POOL", confidence = 0.95,
    match = function(f)
      if f.code ~= "E29" and not f:has("no CPUs are available in the pool") then return nil end
      local running = (f.host.enclaves and #f.host.enclaves > 0) or f:line('"State":%s*"RUNNING"')
      if running then
        return { evidence = ev(f, f:line("no CPUs are available in the pool"),
          type(running) == "string" and ("describe-enclaves: " .. running:gsub("^%s+", "")) or "describe-enclaves lists a running enclave") }
      end
    end },
  { id = "e29-after-exit", finding = "CPU_POOL_NOT_RELEASED", confidence = 0.9,
    match = function(f)
      if f.code ~= "E29" then return nil end
      local exited = (f.host.enclaves and #f.host.enclaves == 0) and "describe-enclaves lists no enclave"
        or f:line("Successfully terminated enclave") or f:line("reboot: Restarting system") or f:line("hang%-up event")
      if exited then return { evidence = ev(f, exited) } end
    end },
  { id = "e29-no-cpus-in-pool", finding = "ENCLAVES_HOLD_POOL", confidence = 0.7,
    match = function(f)
      -- (older tools and the simulator name the driver code instead of nitro-cli's sentence)
      local l = f:line("no CPUs are available in the pool") or f:line("NE_ERR_NO_CPUS_AVAIL_IN_POOL")
      if l then return { evidence = ev(f, l) } end
    end },
  { id = "e29-create-vm", finding = "CPU_POOL_NOT_RELEASED", confidence = 0.55,
    match = function(f)
      -- E29 with no driver detail, before any memory was allocated: the Create VM step
      if f.code == "E29" and f.runs == 0 and #f.subactions == 0 and not f:has("ioctl failed") then
        return { evidence = ev(f, "no `Start allocating memory...` before it: the driver refused to create the enclave") }
      end
    end },
  { id = "e29-create-vm-stale", finding = "ENCLAVES_HOLD_POOL", confidence = 0.5,
    match = function(f)
      if f.code == "E29" and f.runs == 0 and not f:has("ioctl failed") then return { evidence = ev(f) } end
    end },
  { id = "e29-max-regions", finding = "MEMORY_REGIONS_MAX", confidence = 0.95,
    match = function(f)
      local l = f:line("maximum number of memory regions per enclave")
      if l then return { evidence = ev(f, l) } end
    end },
  { id = "e29-cid", finding = "CID_IN_USE", confidence = 0.9,
    match = function(f)
      local l = f:line("enclave CID is invalid") or (f.code == "E29" and f:line("CID.-already"))
      if l then return { vars = { cid = f.text:match("[Cc][Ii][Dd][^%d]*(%d+)") }, evidence = ev(f, l) } end
    end },
  { id = "e35-hugepages", finding = "HUGEPAGES_MISSING", confidence = 0.8,
    match = function(f)
      -- E35 while run-enclave fills the enclave's memory (after `Start allocating memory...`): the hugepage memory
      -- could not be used; E35 from describe-eif/describe-enclaves is the EIF itself
      local running = f.runs > 0 or (f.err_log and (f.err_log.action or ""):find("Run Enclave", 1, true))
      if f.code == "E35" and running then
        return { evidence = ev(f, f:line("Start allocating memory"), f.host.container and "running inside a container" or nil),
                 confidence = (f.host.container or f:has("pod") or f:has("container")) and 0.9 or 0.8 }
      end
    end },
  { id = "e35-eif-invalid", finding = "EIF_INVALID", confidence = 0.5,
    match = function(f)
      if f.code == "E35" then return { vars = { detail = f.root and f.root.message or "" }, evidence = ev(f) } end
    end },
  -- E36: which boot-wait error (resource_manager.rs wait_for_enclave_boot)
  { id = "e36-concurrent", finding = "BOOT_CONCURRENT_RUN", confidence = 0.92,
    match = function(f)
      if f.code == "E36" and (f.runs >= 2 or f:has("Address already in use") or f:has("AddrInUse") or f:has("os error 98")) then
        return { evidence = ev(f, f:line("Address already in use") or f:line("os error 98"),
          f.runs >= 2 and (f.runs .. " `Start allocating memory...` lines: two run-enclave at once") or nil) }
      end
    end },
  { id = "e36-receive", finding = "BOOT_VSOCK_RECEIVE", confidence = 0.8,
    match = function(f)
      local l, what = f:line("(Vsock%a*Error)")
      if f.code == "E36" and what and what ~= "VsockTimeoutError" then
        return { vars = { boot_error = what }, evidence = ev(f, l) }
      end
    end },
  { id = "e36-timeout", finding = "BOOT_HEARTBEAT_TIMEOUT", confidence = 0.6,
    match = function(f)
      if f.code == "E36" and (f:has("VsockTimeoutError") or f:has("SocketPollingError") or f:has("timed out")) then
        return { evidence = ev(f, f:line("Vsock%a*Error") or f:line("SocketPollingError")) }
      end
      -- no err log: an E36 after "Started enclave" is create_enclave's enclave_ready failing (the vsock bind comes
      -- before the start; resource_manager.rs), and its common case is that no heartbeat came at all
      local started = f:line("Started enclave with enclave%-cid")
      if f.code == "E36" and started and not f:has("Waiting on enclave to boot failed") and f.runs <= 1 then
        return { evidence = ev(f, started), confidence = 0.45 }
      end
    end },
  { id = "e59-signature", finding = "SIGNING_CERT_EXPIRED", confidence = 0.9,
    match = function(f)
      if f.code == "E59" or (f.code == "E36" and (f:has("certificate has expired") or f:has("expired certificate"))) then
        return { evidence = ev(f, f:line("[Cc]ertificate")) }
      end
    end },
  { id = "e36-signed-eif", finding = "SIGNING_CERT_EXPIRED", confidence = 0.85,
    match = function(f)
      -- before nitro-cli 1.2.2 a signed EIF whose certificate had expired booted into a heartbeat timeout (#243)
      local signed = f:line("%-%-signing%-certificate") or f:line("SigningCertificate") or f:line("%-%-eif%-path%s+%S*sign%S*")
        or f:line("%-%-eif%-path%s+%S*cert%S*")
      if f.code == "E36" and signed then return { evidence = ev(f, signed, f:line("VsockTimeoutError")) } end
    end },
  { id = "e44-debug-mode", finding = "CONSOLE_NEEDS_DEBUG_MODE", confidence = 0.95,
    match = function(f)
      if f.code == "E44" and (f:has("debug flag") or f:has("debug-mode") or f:has("debug mode")) then return { evidence = ev(f) } end
      if f:has("was not started with the debug flag") then return { evidence = ev(f, f:line("debug flag")) } end
    end },
  { id = "e44-no-detail", finding = "CONSOLE_NEEDS_DEBUG_MODE", confidence = 0.6,
    -- E44 comes from `nitro-cli console`: since 1.0.10 when the enclave's flags lack debug mode (src/main.rs), and
    -- when connecting to the console's vsock port fails (src/utils.rs Console::new), which is closed unless the
    -- enclave runs in debug mode. With no err log saying otherwise, debug mode is the cause to check first.
    match = function(f)
      if f.code == "E44" and not f:has("Enclave CID was not reported") then return { evidence = ev(f) } end
    end },
  { id = "e45-enclave-exited", finding = "ENCLAVE_EXITED_CONSOLE_CLOSED", confidence = 0.7,
    match = function(f)
      local reboot = f:line("reboot: Restarting system") or f:line("reboot: machine restart")
      if f.code == "E45" or (f.code == "E11" and reboot) then
        -- the console closed because the enclave went away: when the application's own error is on the console,
        -- that error is the cause and this is its consequence
        local app_error
        for _, x in ipairs(f.lines) do
          if not f:cli_line(x) and
             (x:find("[Ee]rror[:%s]") or x:find("panicked at") or x:find("[Tt]raceback")) then app_error = x break end
        end
        return { evidence = ev(f, reboot), confidence = reboot and 0.9 or 0.7, secondary = app_error ~= nil }
      end
    end },
  { id = "e11-no-enclave-process", finding = "ENCLAVE_NOT_RUNNING", confidence = 0.9,
    match = function(f)
      local l = f:line("Failed to connect to specific enclave process.-NotFound") or f:line("Failed to connect to specific enclave process.-No such file")
      if l and not f:has("reboot: Restarting system") then return { evidence = ev(f, l) } end
    end },
  { id = "memory-rounded-up", finding = "ENCLAVE_MEMORY_ROUNDED_UP", confidence = 0.6,
    match = function(f)
      local asked = tonumber(f.text:match("%-%-memory%s+(%d+)"))
      local l, given = f:line("Started enclave with enclave%-cid: %d+, memory: (%d+) MiB")
      given = tonumber(given)
      if asked and given and given > asked then
        return { vars = { requested_mib = asked, given_mib = given }, evidence = { l } }
      end
    end },
  { id = "e51-artifacts", finding = "ARTIFACTS_PATH_UNSET", confidence = 0.95,
    match = function(f)
      if f.code == "E51" or f:has("set either HOME or NITRO_CLI_ARTIFACTS") then return { evidence = ev(f, f:line("NITRO_CLI_ARTIFACTS")) } end
    end },
  { id = "e39-follows", finding = "STALE_ENCLAVE_PROCESS", confidence = 0.3, secondary = true,
    match = function(f)
      if f.codes.E39 and f.code ~= "E39" then return { evidence = { "E39 after " .. f.code .. ": the enclave process had already exited" } } end
    end },
  { id = "e39-alone", finding = "STALE_ENCLAVE_PROCESS", confidence = 0.4,
    match = function(f)
      if f.code == "E39" then return { evidence = ev(f) } end
    end },
}

-- The generic entry of the root code: the code is certain, the cause is not.
rules[#rules + 1] = { id = "code-generic", finding = "E00", confidence = 0.2,
  match = function(f)
    if f.code and errors.get(f.code) then
      return { finding = f.code, vars = { detail = f.root and f.root.message or "" }, evidence = ev(f) }
    end
  end }

return { area = "nitro-cli", rules = rules }
