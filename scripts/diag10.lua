-- diag10: the full diagnosis of a Nitro Enclaves host in about three minutes — the seed runbook (an SSM bash
-- script) done right. It checks the host (nitro-cli, the device, the allocator), avoids E51, lists the enclaves
-- already running (and leaves them alone unless told otherwise), predicts E26/E27 before anything runs, builds the
-- vsock-pingpong images (basic and vsock, no `/bin/sh -c`) and their EIFs, runs each one with an attached console
-- for a bounded time (pinging the vsock one while it runs), runs the AWS hello enclave as the control, and analyses
-- every console and error output into findings with the numbers. Everything the old script collected goes into the
-- bundle, plus what it lost: the full run log and the build logs.
--
-- Safety: diag10 never terminates an enclave it did not start unless asked: terminate=stale (enclaves named
-- nitrodiag-*, which only nitrodiag's own test runs use, left by an earlier run) or terminate=all; on a terminal it
-- asks first. The test enclaves it starts are named nitrodiag-<run> and always terminated by ID in the clean-up
-- step, which a second Ctrl-C does not cancel; what it cannot terminate is listed as the exact commands to run.
local checks = require "nd.checks"

local NAME_PREFIX, HELLO_EIF, RUNS = checks.NAME_PREFIX, checks.HELLO_EIF, checks.RUNS

return {
  name = "diag10",
  description = "Full enclave diagnosis: host checks, E26/E27 prediction, build and run test enclaves, vsock ping, bundle",
  categories = { "diagnosis", "canned" },
  args = {
    { name = "memory", type = "integer", default = 1024, min = 1, help = "MiB for each run-enclave" },
    { name = "cpu_count", type = "integer", default = 2, min = 1, help = "vCPUs for each run-enclave" },
    { name = "run_seconds", type = "number", default = 20, min = 1, help = "how long each enclave runs with its console attached" },
    { name = "runs", type = "list", default = "basic,vsock,hello,workload", choices = RUNS,
      help = "which runs: basic, vsock, hello (the AWS control), smoke (the busybox image: does an enclave boot at all), workload (the host's own enclaves, see workload=)" },
    { name = "terminate", type = "string", default = "none", choices = { "none", "stale", "all" },
      help = "enclaves this run did not start: none (list them; on a terminal, ask), stale (those named " ..
        NAME_PREFIX .. "*, left by an earlier nitrodiag run), all (every one, production included)" },
    { name = "build", type = "boolean", default = true, help = "build the images from context (false: use the existing images)" },
    { name = "context", type = "string", help = "docker build context holding enclave/Dockerfile (default: the shipped one), or a directory with a Dockerfile" },
    { name = "image", type = "string", default = "hello-enclave", help = "image repository; runs use <image>:<mode>" },
    { name = "hello_eif", type = "string", default = HELLO_EIF, help = "EIF of the AWS hello enclave (the control run)" },
    { name = "eifs", type = "list", default = "", help = "more EIFs to check and run (comma-separated host paths, read under --root/--sim)" },
    { name = "workload", type = "list", default = "", help = "the host's own enclaves: run-enclave --config JSON files (default: /etc/nitrodiag/workload.d/*.json)" },
  },
  deadline = 180,
  collect = true,
  steps = {
    { name = "nitro-cli", timeout = 15, required = true, collects = { "nitro_cli_version.txt" },
      run = checks.nitro_cli },
    { name = "device", timeout = 5, run = checks.device },
    { name = "allocator", timeout = 20, collects = checks.ALLOCATOR_COLLECTS, run = checks.allocator },
    { name = "artifacts path (E51)", timeout = 5, run = checks.artifacts_dir },
    -- The enclaves already running: what they are and whether they hold what this run needs. diag10 terminates
    -- none of them unless terminate=stale|all says so or the operator says yes at the prompt.
    { name = "running enclaves", timeout = 90, collects = { "describe_enclaves.before.json" },
      run = checks.running_enclaves },
    { name = "workload", timeout = 120, run = checks.workload },
    { name = "build images", timeout = 120, collects = checks.build_collects, run = checks.build_images },
    -- One finding per cause (E26, E27, …) naming the EIFs it concerns as the operator knows them (the test EIFs by
    -- their run, the operator's by the path given); a run predicted to fail is not started.
    { name = "predict E26/E27", timeout = 15, run = checks.predict },
    { name = "run enclaves", timeout = 150, collects = checks.run_collects, run = checks.run_enclaves },
    { name = "hello control", timeout = 60, collects = { "run_hello.console.log", "run_hello.log" },
      when = checks.asked("hello"), skip_reason = "not asked for (runs=)",
      run = checks.hello },
    { name = "collect", timeout = 40, always = true, collects = checks.COLLECT_COLLECTS, run = checks.collect },
    -- The enclaves this run started, and only those, terminated by ID; bounded (the engine never lets a signal
    -- cancel this step). What cannot be terminated is listed as the exact commands to run.
    { name = "cleanup", timeout = 45, always = true, run = checks.cleanup },
  },

  report = function(result, data)
    local lines = {}
    for _, st in ipairs(result.steps) do
      if st.name == "run enclaves" and st.outcome == "ok" then lines[#lines + 1] = "enclaves: " .. (st.message or "") end
    end
    -- Whatever stopped the clean-up (its time limit, a crash), the operator gets the exact commands.
    local left = {}
    for _, id in ipairs(data and data.started_ids or {}) do
      data.terminated = data.terminated or {}
      if not data.terminated[id] then left[#left + 1] = "  " .. checks.terminate_cmd(id) end
    end
    if #left > 0 then
      lines[#lines + 1] = "test enclaves this run started may still be running; terminate them with:"
      for _, l in ipairs(left) do lines[#lines + 1] = l end
    end
    return #lines > 0 and table.concat(lines, "\n") or nil
  end,
}
