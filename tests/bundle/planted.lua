-- The planted-secret runbook (tests/bundle/planted.py builds the host tree and checks the archive): collects a fake
-- host through every artifact kind diag10 uses — a tail of nitro_enclaves.log, the err*.log glob (names included),
-- strings (allocator.yaml, nitro-cli and docker output), JSON, `systemctl status`, the journal, dmesg, a command's
-- stderr — plus files around the 4 MiB in-memory limit and 256 KiB read boundaries, a line over 1 MiB, the run log,
-- and findings (summary.json, report.md). The fake systemctl/journalctl/dmesg are on PATH (planted.py puts them there).
local json = require "nd.json"

return {
  description = "planted-secret test: every artifact kind of a collection",
  deadline = 600,
  collect = true,
  steps = {
    { name = "collect", timeout = 600,
      run = function(s)
        local b = assert(s.bundle, "no bundle")
        local root = s.ctx.root
        local function read(p)
          local f = assert(io.open(root .. p, "rb"))
          local t = f:read("a")
          f:close()
          return t
        end
        -- as diag10 collects
        b:add_file("nitro_enclaves.log.tail", "/var/log/nitro_enclaves/nitro_enclaves.log", { tail_lines = 250 })
        b:add_glob("/var/log/nitro_enclaves/err*.log", { prefix = "" })
        b:add_string("allocator.yaml", read("/etc/nitro_enclaves/allocator.yaml"))
        b:add_command("allocator_service.status",
          { "systemctl", "status", "--no-pager", "nitro-enclaves-allocator.service" }, { timeout = 60 })
        b:add_journal("kms-proxy-host", { lines = 100000, timeout = 60 })
        b:add_dmesg({ lines = 100000, timeout = 60 })
        b:add_string("nitro_cli_version.txt", read("/shapes.txt"))
        b:add_string("build_debug.docker.log", "$ docker build .\n" .. read("/shapes.txt"))
        b:add_string("docker_inspect_debug.json", read("/docker_inspect.json"))
        b:add_json("describe_enclaves.json", json.decode(read("/shapes.json")))
        b:add_command("stderr.txt", { "sh", "-c", "cat \"$0\" >&2", root .. "/shapes.txt" }, { timeout = 60 })
        -- the size boundaries: over 4 MiB (two passes), exactly 4 MiB (one pass in memory), a 4 MiB tail cut
        b:add_file("big.log", "/var/log/big.log")
        b:add_file("big.tail", "/var/log/big.log", { tail_bytes = 4 * 1024 * 1024 })
        b:add_file("exact4m.log", "/var/log/exact4m.log")
        b:add_file("credentials", "/root/.aws/credentials")
        b:add_file("longline.log", "/var/log/longline.log") -- one line over the scrubber's 1 MiB line limit
        -- the run log and the findings
        local ev = {}
        local text = read("/shapes.log") .. "\n----8<----\n"
        for msg in text:gmatch("(.-)\n%-%-%-%-8<%-%-%-%-\n") do
          s:log(msg)
          if #ev < 40 then ev[#ev + 1] = msg end
        end
        s:finding{ code = "T-PLANTED", severity = "warn", message = "planted secrets: " .. ev[1],
                   evidence = ev, remediation = "rotate " .. (ev[2] or "") }
      end },
  },
}
