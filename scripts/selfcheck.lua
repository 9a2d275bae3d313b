-- selfcheck: is this nitrodiag installation able to do its job? Checks the engine itself: every built-in module
-- loads, commands run and time out as they should, the output directory is writable, and which host tools exist.
local proc = require "nd.proc"
local host = require "nd.host"
local fs = require "nd.fs"
local nd = require "nd"

return {
  description = "Check this nitrodiag installation: modules, process runner, output directory, host tools",
  categories = { "meta" },
  args = {
    { name = "out", type = "string", help = "directory that must be writable (default: current directory)" },
  },
  deadline = 30,
  steps = {
    { name = "built-in modules", timeout = 5,
      run = function(s)
        local names = debug.getregistry()["nd.builtin_modules"]()
        local bad = {}
        for _, n in ipairs(names) do
          if not n:match("^nd%.sim%.") then
            local ok, err = pcall(require, n)
            if not ok then bad[#bad + 1] = n .. ": " .. tostring(err):match("^[^\n]*") end
          end
        end
        if #bad > 0 then
          s:finding{ code = "ND-MOD", severity = "fail", message = #bad .. " built-in module(s) do not load",
                     evidence = bad, remediation = "rebuild nitrodiag; report this as a bug" }
        else
          s:ok(#names .. " modules load")
        end
      end },
    { name = "process runner", timeout = 10,
      run = function(s)
        local r = proc.run{ "sh", "-c", "echo ok", timeout = 5 }
        if not r or r.stdout ~= "ok\n" then s:fail("cannot run a command: " .. (r and r.status or "?")) return end
        local t0 = nd.now()
        local t = proc.run{ "sleep", "30", timeout = 0.3, kill_grace = 0.2 }
        if not t.timed_out or nd.now() - t0 > 2 then s:fail("timeouts do not work: " .. t.status) return end
        s:ok(string.format("runs commands; a 0.3 s timeout ended sleep 30 in %.1f s", nd.now() - t0))
      end },
    { name = "output directory", timeout = 5,
      run = function(s)
        local dir = s.args.out or "."
        local probe = dir .. "/.nitrodiag-selfcheck-" .. host.hostname()
        local ok, err = fs.write(probe, "probe")
        if not ok then
          s:finding{ code = "ND-OUT", severity = "fail", message = "cannot write bundles to " .. dir,
                     evidence = { err }, remediation = "use --out DIR with a writable directory" }
          return
        end
        fs.rm_rf(probe)
        s:ok(dir .. " is writable")
      end },
    { name = "host tools", timeout = 10,
      run = function(s)
        local missing, found = {}, {}
        for _, tool in ipairs({ host.nitro_cli(), "systemctl", "journalctl", "dmesg", "docker" }) do
          local r = proc.run{ "sh", "-c", 'command -v "$0"', tool, timeout = 3 }
          if r and r.exit_code == 0 then found[#found + 1] = tool else missing[#missing + 1] = tool end
        end
        s:log("found: " .. table.concat(found, ", "))
        if #missing > 0 then
          s:finding{ code = "ND-TOOLS", severity = "info",
                     message = "not on PATH: " .. table.concat(missing, ", ") .. " (use --sim to try the runbooks)",
                     evidence = { "PATH=" .. (host.getenv("PATH") or "") } }
          s:ok("missing: " .. table.concat(missing, ", "))
        else
          s:ok("all present")
        end
      end },
  },
}
