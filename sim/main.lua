-- nd.sim.main — entry point of the simulated host's commands. The simulated host's bin directory holds links named
-- nitro-cli, systemctl, docker, dmesg and journalctl to the nitrodiag binary; when the binary runs under one of those
-- names (lua/main.c) it calls main(progname, args), which dispatches to the stand-in and returns its exit status.
local M = {}

local DISPATCH = {
  ["nitro-cli"] = function(args) return require("nd.sim.nitro_cli").main(args) end,
  systemctl = function(args) return require("nd.sim.tools").systemctl(args) end,
  docker = function(args) return require("nd.sim.tools").docker(args) end,
  dmesg = function(args) return require("nd.sim.tools").dmesg(args) end,
  journalctl = function(args) return require("nd.sim.tools").journalctl(args) end,
  -- the enclave process of the qemu backend (started by run-enclave, never by users): nd.sim.backend_qemu
  ["nd-sim-enclave"] = function(args) return require("nd.sim.backend_qemu").supervise(args) end,
}

-- main(progname, args) -> exit status
function M.main(progname, args)
  local fn = DISPATCH[progname]
  if not fn then
    io.stderr:write("nitrodiag: unknown program name '", tostring(progname), "' (simulated host commands: ",
      "nitro-cli, systemctl, docker, dmesg, journalctl)\n")
    return 127
  end
  if progname == "nd-sim-enclave" then return fn(args) end -- also serves `nitrodiag boot`, outside a simulated host
  if not os.getenv("NITRODIAG_SIM_ROOT") or os.getenv("NITRODIAG_SIM_ROOT") == "" then
    io.stderr:write(progname, " (nitrodiag simulator): NITRODIAG_SIM_ROOT is not set; this is the simulated host's ",
      progname, ", run it through `nitrodiag --sim` or nd.sim.activate\n")
    return 1
  end
  math.randomseed(os.time() + (require("luv").os_getpid()))
  local ok, rc = xpcall(fn, function(e)
    -- expected trouble with the simulated host itself (state missing/corrupt, lock busy): one line
    if type(e) == "string" and e:match("^simulat") then return { line = e } end
    return debug.traceback(e)
  end, args)
  io.stdout:flush()
  -- a stand-in that waited on the host's clock leaves no "blocked" mark behind (nd.sim.clock)
  pcall(function() require("nd.sim.clock").unblock() end)
  if not ok and type(rc) == "table" then
    io.stderr:write(progname, " (nitrodiag simulator): ", rc.line, "\n")
    return 1
  end
  if not ok then
    io.stderr:write(progname, " (nitrodiag simulator): internal error: ", tostring(rc), "\n")
    return 70
  end
  return math.tointeger(rc) or 0
end

return M
