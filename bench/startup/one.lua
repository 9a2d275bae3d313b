return {
  description = "one empty step (start-up benchmark)",
  steps = { { name = "nothing", run = function(s) s:ok("nothing") end } },
}
