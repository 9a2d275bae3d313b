-- nd.cli — the nitrodiag command line (placeholder until the engine commit: version and run file).
local M = {}
function M.main(prog, args)
  if args[1] == "--version" then print("nitrodiag " .. (os.getenv("ND_VERSION") or "dev")) return 0 end
  if args[1] == "run" and args[2] then
    local fn = assert(loadfile(args[2]))
    fn(table.unpack(args, 3))
    return 0
  end
  io.stderr:write("usage: nitrodiag --version | run FILE.lua\n")
  return 2
end
return M
