-- allocator: show /etc/nitro_enclaves/allocator.yaml and the allocator service, or change memory_mib, cpu_count or
-- cpu_pool the way the AWS workshop does it (stop → edit → start → enable), safely: validate first, refuse while
-- enclaves run, back the file up, verify that the service came back with the new values, and roll back on failure.
local proc = require "nd.proc"
local host = require "nd.host"
local fs = require "nd.fs"
local nitro = require "nd.nitro"
local allocator = require "nd.allocator"

local UNIT = require("nd.findings").ALLOCATOR_UNIT

local function systemctl(...)
  local argv = { "systemctl", ... }
  argv.timeout = 60
  return proc.run(argv)
end

local function changes_of(a)
  local c = {}
  if a.memory_mib then c.memory_mib = a.memory_mib end
  if a.cpu_count then c.cpu_count = a.cpu_count end
  if a.cpu_pool then c.cpu_pool = a.cpu_pool end
  return next(c) and c or nil
end

local function describe(cfg)
  return string.format("memory_mib %s, %s", tostring(cfg.memory_mib),
    cfg.cpu_pool and ("cpu_pool " .. cfg.cpu_pool) or ("cpu_count " .. tostring(cfg.cpu_count)))
end

local function changing(s) return s.data.changes ~= nil and not s.args.dry_run end

return {
  description = "Show allocator.yaml and its service, or set memory_mib/cpu_count/cpu_pool safely (validate, backup, verify, roll back)",
  categories = { "repair", "config" },
  args = {
    { name = "memory_mib", type = "integer", min = 1, help = "MiB of hugepage memory to reserve for enclaves" },
    { name = "cpu_count", type = "integer", min = 1, help = "number of CPUs to reserve (excludes cpu_pool)" },
    { name = "cpu_pool", type = "string", help = "exact CPUs to reserve, e.g. 2,3,6-9 (excludes cpu_count)" },
    { name = "dry_run", type = "boolean", default = false, help = "validate and show the new file, change nothing" },
  },
  deadline = 180,
  steps = {
    { name = "show", timeout = 20, required = true,
      run = function(s)
        local cfg, text, code = allocator.load()
        s.data.text = type(text) == "string" and text or nil
        local r = systemctl("is-active", UNIT)
        s.data.state = r and (r.stdout:match("^(%S+)") or "unknown") or "unknown"
        if not cfg then
          s:log("allocator.yaml: " .. tostring(text))
          s:finding{ code = "ALLOCATOR_CONFIG", severity = changes_of(s.args) and "warn" or "fail",
            message = allocator.PATH .. ": " .. tostring(text), evidence = { tostring(code) },
            remediation = "set the values with this runbook (memory_mib=… cpu_count=…) to rewrite the faulty lines" }
        else
          s.data.before = cfg
          for l in (s.data.text or ""):gmatch("[^\n]*") do if l ~= "" then s:log(l) end end
          s:ok(describe(cfg) .. "; service " .. s.data.state)
        end
        s.data.changes = changes_of(s.args)
        if s.args.cpu_count and s.args.cpu_pool then
          s:fail("cpu_count and cpu_pool exclude each other: give one")
        end
      end },
    { name = "validate", timeout = 10, required = true,
      when = function(a) return changes_of(a) ~= nil end, skip_reason = "nothing to change (show only)",
      run = function(s)
        local new, err = allocator.edit_text(s.data.text or "---\n", s.data.changes)
        if not new then s:fail("the new configuration is not valid: " .. err) return end
        local cfg, perr = allocator.parse(new, allocator.PATH)
        if not cfg then s:fail("the new configuration is not valid: " .. perr) return end
        for _, w in ipairs(cfg.warnings or {}) do s:log("warning: " .. w) end
        if cfg.pool_cpus then
          for _, c in ipairs(cfg.pool_cpus) do
            if c == 0 then s:fail("cpu_pool contains CPU 0, which always stays with the parent instance") return end
          end
        end
        s.data.new_text = new
        s.data.after = cfg
        s:log("new file:\n" .. new)
        s:ok("new values: " .. describe(cfg))
      end },
    { name = "no enclaves running", timeout = 30, required = true, when = function(a) return changes_of(a) ~= nil end,
      skip_reason = "nothing to change",
      run = function(s)
        local list, err = nitro.describe_enclaves()
        if not list then s:fail("describe-enclaves failed: " .. err) return end
        if #list > 0 then
          local ev = {}
          local ids = {}
          for _, e in ipairs(list) do
            ev[#ev + 1] = e.EnclaveID .. " " .. (e.EnclaveName or "") .. " " .. e.State
            ids[#ids + 1] = "nitrodiag cleanup id=" .. e.EnclaveID
          end
          s:finding{ code = "ENCLAVES_RUNNING", severity = "fail",
            message = #list .. " enclave(s) running: the allocator cannot change CPUs or memory under them",
            evidence = ev, remediation = "stop the workloads they run, or terminate them if they are stale (" ..
              table.concat(ids, "; ") .. "), then run this again" }
          return
        end
        s:ok("none")
      end },
    { name = "stop service", timeout = 60, required = true, when = function(a) return changes_of(a) ~= nil and not a.dry_run end,
      skip_reason = "nothing to change or dry run",
      run = function(s)
        local r, err = systemctl("stop", UNIT)
        if not r or r.exit_code ~= 0 then s:fail("systemctl stop " .. UNIT .. " failed: " .. (r and r.stderr or err)) return end
        s.data.stopped = true
        s:ok("stopped")
      end },
    { name = "write allocator.yaml", timeout = 20, required = true, when = function(a) return changes_of(a) ~= nil and not a.dry_run end,
      skip_reason = "nothing to change or dry run",
      run = function(s)
        local backup, err = allocator.write(s.data.changes)
        if not backup then s:fail("cannot write " .. allocator.PATH .. ": " .. err) return end
        s.data.backup = backup
        s:ok("written; backup " .. backup)
      end },
    { name = "start and enable", timeout = 90, required = true, when = function(a) return changes_of(a) ~= nil and not a.dry_run end,
      skip_reason = "nothing to change or dry run",
      run = function(s)
        local r, err = systemctl("start", UNIT)
        if not r or r.exit_code ~= 0 then
          -- The allocator's own words: its error lines from the journal of this start (the script prints "Error: …").
          local ev = { r and (r.stderr ~= "" and r.stderr or r.stdout):gsub("%s+$", "") or err }
          local j = proc.run{ "journalctl", "-u", UNIT, "-o", "cat", "--no-pager", "-n", "30", timeout = 20 }
          local own = {}
          for line in ((j and j.stdout) or ""):gmatch("[^\n]+") do
            if line:match("^Error") or line:match("[Ee]rror:") or line:match("[Ff]ailed") then own[#own + 1] = line end
          end
          for _, l in ipairs(own) do ev[#ev + 1] = "journal: " .. l end
          s:finding{ code = "ALLOCATOR_START_FAILED", severity = "fail",
            message = "the allocator did not start with the new values" .. (own[1] and (": " .. own[1]) or ""),
            evidence = ev,
            remediation = (own[1] and "fix what the allocator says above" or ("see journalctl -u " .. UNIT)) ..
              "; the previous file is restored by the rollback step" }
          return
        end
        local e = systemctl("enable", UNIT)
        if e and e.exit_code ~= 0 then s:warn("started, but enable failed: " .. e.stderr) return end
        s:ok("started and enabled")
      end },
    { name = "verify", timeout = 30, required = true, when = function(a) return changes_of(a) ~= nil and not a.dry_run end,
      skip_reason = "nothing to change or dry run",
      run = function(s)
        local r = systemctl("is-active", UNIT)
        local state = r and r.stdout:match("^(%S+)") or "unknown"
        if state ~= "active" then s:fail(UNIT .. " is " .. state .. " after the change") return end
        local cfg = allocator.load()
        if not cfg or (s.data.changes.memory_mib and cfg.memory_mib ~= s.data.changes.memory_mib) or
           (s.data.changes.cpu_count and cfg.cpu_count ~= s.data.changes.cpu_count) then
          s:fail("allocator.yaml does not hold the new values") return
        end
        -- The service reports what it really reserved: "Successfully allocated Nitro Enclaves resources: N MiB, M CPUs"
        local j = proc.run{ "journalctl", "-u", UNIT, "-o", "cat", "--no-pager", "-n", "20", timeout = 20 }
        local mib, cpus
        for m, c in (j and j.stdout or ""):gmatch("Successfully allocated Nitro Enclaves resources: (%d+) MiB, (%d+) CPUs") do
          mib, cpus = tonumber(m), tonumber(c)
        end
        if mib and s.data.changes.memory_mib and mib ~= s.data.changes.memory_mib then
          s:fail(string.format("the service reserved %d MiB, not %d", mib, s.data.changes.memory_mib)) return
        end
        s.data.verified = true
        s:ok(mib and string.format("active: reserved %d MiB, %d CPUs", mib, cpus) or ("active: " .. describe(cfg)))
      end },
    { name = "rollback", timeout = 60, always = true,
      when = function(a) return changes_of(a) ~= nil and not a.dry_run end, skip_reason = "nothing was changed",
      run = function(s)
        if s.data.verified then s:skip("not needed: the change was verified") end
        if not s.data.stopped then s:skip("nothing was changed") end
        if s.data.backup then
          local old, err = fs.read(s.data.backup)   -- a real path (already under the root)
          if not old then s:fail("cannot read the backup " .. s.data.backup .. ": " .. err) return end
          local ok, werr = fs.write_atomic(host.path(allocator.PATH), old)
          if not ok then s:fail("cannot restore " .. allocator.PATH .. ": " .. werr) return end
        end
        local r = systemctl("start", UNIT)
        if not r or r.exit_code ~= 0 then
          s:fail("restored the previous file, but the allocator does not start: see journalctl -u " .. UNIT) return
        end
        s:warn("rolled back to the previous allocator.yaml; the service is running with the old values")
      end },
  },
}
