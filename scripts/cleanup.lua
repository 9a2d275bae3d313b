-- cleanup: terminate the enclaves you name (by name, CID or ID, the stale ones, or all=true), verify none of them
-- remain, report what was freed, and remove stale enclave-process sockets. With no selection it terminates nothing:
-- it lists the running enclaves and, on a terminal, asks. Running it twice is safe: the second run finds nothing.
local nd = require "nd"
local host = require "nd.host"
local fs = require "nd.fs"
local nitro = require "nd.nitro"

local SOCKETS_DIR = "/run/nitro_enclaves"
-- Enclaves named nitrodiag-* are the test enclaves of nitrodiag's runbooks (diag10): one still running was left by a
-- run that could not clean up. That is the "stale" rule (stale=true), the same as diag10's terminate=stale.
local STALE_PREFIX = "nitrodiag-"

local function glob_to_pattern(g)
  return "^" .. g:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".") .. "$"
end

return {
  description = "Terminate the enclaves you name (name/CID/ID, stale=true or all=true), verify they are gone, report what was freed",
  categories = { "repair" },
  args = {
    { name = "name", type = "string", help = "the enclaves with this name (shell wildcards * and ? allowed)" },
    { name = "cid", type = "integer", help = "the enclave with this CID" },
    { name = "id", type = "string", help = "the enclave with this enclave ID" },
    { name = "stale", type = "boolean", default = false, help = "the enclaves named " .. STALE_PREFIX .. "* that nitrodiag's test runs left" },
    { name = "all", type = "boolean", default = false, help = "every running enclave, production ones included" },
    { name = "dry_run", type = "boolean", default = false, help = "show what would be terminated, change nothing" },
  },
  deadline = 120,
  steps = {
    { name = "find enclaves", timeout = 30, required = true,
      run = function(s)
        local list, err = nitro.describe_enclaves()
        if not list then s:fail("describe-enclaves failed: " .. err) return end
        local a, targets = s.args, {}
        local selected = a.all or a.stale or a.name or a.cid or a.id
        local pat = a.name and glob_to_pattern(a.name)
        local lines = {}
        for _, e in ipairs(list) do
          local _, age = nitro.enclave_started(e)
          local line = string.format("%s %s CID %s, %s, %s, %s CPUs %s, %s MiB, %s", e.EnclaveID,
            e.EnclaveName and ("\"" .. e.EnclaveName .. "\"") or "(no name)", tostring(e.EnclaveCID),
            e.Flags == "DEBUG_MODE" and "debug mode" or "production (not debug)",
            age and string.format("up %.0f s", age) or "age unknown", tostring(e.NumberOfCPUs),
            table.concat(e.CPUIDs or {}, ","), tostring(e.MemoryMiB), tostring(e.State))
          lines[#lines + 1] = line
          s:log(line)
          local stale = (e.EnclaveName or ""):sub(1, #STALE_PREFIX) == STALE_PREFIX
          if selected and (not pat or (e.EnclaveName or ""):match(pat)) and (not a.cid or e.EnclaveCID == a.cid) and
             (not a.id or e.EnclaveID == a.id) and (not a.stale or stale) then
            targets[#targets + 1] = e
          end
        end
        s.data.running = list
        s.data.targets = targets
        if not selected and #list > 0 then
          -- Nothing named: never terminate on a guess. On a terminal, ask about each one.
          if s.interactive then
            for i, e in ipairs(list) do
              if s:ask("terminate " .. lines[i] .. "?") then targets[#targets + 1] = e end
            end
          end
          if #targets == 0 then
            s:finding{ code = "NOTHING_SELECTED", severity = "warn",
              message = string.format("%d enclave(s) running; none terminated: say which ones", #list),
              evidence = lines,
              remediation = "nitrodiag cleanup id=<EnclaveID> (or name=, cid=, stale=true for those nitrodiag left, " ..
                "all=true for every one)" }
            return
          end
        end
        s:ok(string.format("%d running, %d to terminate", #list, #targets))
      end },
    { name = "terminate", timeout = 60,
      run = function(s)
        local targets = s.data.targets
        if #targets == 0 then s:skip("nothing to terminate") end
        if s.args.dry_run then s:skip("dry run: would terminate " .. #targets .. " enclave(s)") end
        local cpus, mem, failed = 0, 0, {}
        for _, e in ipairs(targets) do
          s:progress("terminate-enclave " .. e.EnclaveID)
          local res, err = nitro.terminate{ id = e.EnclaveID, timeout = 30 }
          if res then
            cpus = cpus + (e.NumberOfCPUs or 0)
            mem = mem + (e.MemoryMiB or 0)
          else
            failed[#failed + 1] = e.EnclaveID .. ": " .. err
          end
        end
        s.data.freed = { cpus = cpus, memory_mib = mem }
        if #failed > 0 then
          s:finding{ code = "TERMINATE_FAILED", severity = "fail", message = #failed .. " enclave(s) could not be terminated",
            evidence = failed, remediation = "retry; if an enclave stays, check `nitro-cli describe-enclaves` and the err logs" }
        else
          s:ok(string.format("terminated %d enclave(s): freed %d CPUs and %d MiB", #targets, cpus, mem))
        end
      end },
    { name = "verify", timeout = 30,
      run = function(s)
        if #s.data.targets == 0 or s.args.dry_run then s:skip("nothing was terminated") end
        local wanted = {}
        for _, e in ipairs(s.data.targets) do wanted[e.EnclaveID] = true end
        for attempt = 1, 10 do
          local list = nitro.describe_enclaves() or {}
          local left = {}
          for _, e in ipairs(list) do if wanted[e.EnclaveID] then left[#left + 1] = e.EnclaveID .. " " .. e.State end end
          if #left == 0 then s:ok("none of them remain") return end
          if attempt == 10 then
            s:finding{ code = "ENCLAVES_REMAIN", severity = "fail", message = #left .. " enclave(s) remain after terminate",
              evidence = left, remediation = "run cleanup again; an enclave stuck in TERMINATING needs the err log of its terminate" }
            return
          end
          nd.sleep(0.5)
        end
      end },
    { name = "stale sockets", timeout = 10,
      run = function(s)
        local dir = host.path(SOCKETS_DIR)
        local names = fs.list(dir)
        if not names then s:skip(SOCKETS_DIR .. " does not exist") end
        local alive = {}
        for _, e in ipairs(nitro.describe_enclaves() or {}) do alive[e.EnclaveID] = true end
        local removed = {}
        for _, n in ipairs(names) do
          local id = n:match("^(.+)%.sock$")
          if id and not alive[id] then
            if not s.args.dry_run then fs.rm_rf(dir .. "/" .. n) end
            removed[#removed + 1] = SOCKETS_DIR .. "/" .. n
          end
        end
        if #removed > 0 then
          s:log((s.args.dry_run and "would remove " or "removed ") .. table.concat(removed, ", "))
          s:ok(string.format("%s %d stale socket(s)", s.args.dry_run and "would remove" or "removed", #removed))
        else
          s:ok("no stale socket")
        end
      end },
  },
  report = function(result)
    for _, st in ipairs(result.steps) do
      if st.name == "terminate" and st.outcome == "ok" then return st.message end
    end
  end,
}
