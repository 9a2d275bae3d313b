-- bench/bundle/collect.lua — the benchmark's runbook: the tail of one log (mode=tail) or a bundle of every file a
-- glob matches (mode=glob), through nd.bundle exactly as runbooks use it.
return {
  description = "bench: nd.bundle tail / glob collection",
  args = {
    { name = "mode", type = "string", default = "tail", help = "tail | glob" },
    { name = "path", type = "string", default = "", help = "the log (tail) or the glob pattern (glob)" },
    { name = "lines", type = "number", default = 1000, help = "lines for mode=tail" },
  },
  deadline = 3600,
  collect = true,
  steps = {
    { name = "collect", timeout = 3600,
      run = function(s)
        local b = s.bundle
        if s.args.mode == "tail" then
          local e = b:add_file("tail.log", s.args.path, { tail_lines = s.args.lines })
          s:ok(e.status .. " " .. e.bytes .. " bytes")
        else
          local list = b:add_glob(s.args.path, { cap = 4 * 1024 * 1024 * 1024 })
          s:ok(#list .. " files")
        end
      end },
  },
}
