-- A test runbook for the engine specs: a long step, then a clean-up step that takes a while and writes markers
-- (ND_TEST_DIR/long.started, cleanup.started, cleanup.done), and an info finding. With ND_TEST_CLEANUP_GO=FILE the
-- clean-up step ends once FILE exists instead of after cleanup_seconds.
return {
  description = "engine test: signals during clean-up",
  args = {
    { name = "cleanup_seconds", type = "number", default = 1.5, help = "how long the clean-up step takes" },
  },
  deadline = 60,
  steps = {
    { name = "long", timeout = 100,
      run = function(s)
        s:finding{ code = "T_INFO", severity = "info", message = "an info finding for the operator" }
        local dir = os.getenv("ND_TEST_DIR")
        if dir then require("nd.fs").write(dir .. "/long.started", "1") end
        require("nd").sleep(100)
      end },
    { name = "cleanup", always = true, timeout = 10,
      run = function(s)
        local dir = os.getenv("ND_TEST_DIR")
        local fs = require "nd.fs"
        fs.write(dir .. "/cleanup.started", "1")
        local go = os.getenv("ND_TEST_CLEANUP_GO")
        if go then -- the spec says when the clean-up may end (after it has seen the signals handled)
          while not fs.exists(go) do require("nd").sleep(0.02) end
        else
          require("nd").sleep(s.args.cleanup_seconds)
        end
        fs.write(dir .. "/cleanup.done", "1")
        s:ok("cleaned up")
      end },
  },
}
