%% Benchmark driver (not a test) for consult_grpc, run by bench/sidecar.ts:
%%   erl -noshell -pa ebin -pa ebin-test -eval 'consult_bench:main()' -extra Port Count Callers Visitors
%% Starts the real shim client against a running sidecar, then Callers
%% processes call consult_grpc:filter/3 back to back until Count consult
%% stanzas (visitor -> shop, Visitors distinct visitors) have a verdict. Prints
%% one line "@@ {json}" with count, seconds, p50/p99/max (ms) and failures.
-module(consult_bench).

-export([main/0]).

main() ->
    [Port, Count, Callers, Visitors] = [list_to_integer(A) || A <- init:get_plain_arguments()],
    logger:set_primary_config(level, error),
    {ok, _} = consult_grpc:start_link(#{host => "127.0.0.1", port => Port, hosts => [<<"localhost">>],
                                        node => <<"bench@localhost">>}),
    wait_connected(10000),
    run(200, Callers, Visitors, 1000000),            % warm-up, not reported
    {Secs, Lat, Failures} = run(Count, Callers, Visitors, 0),
    Sorted = lists:sort(Lat),
    N = length(Sorted),
    Pct = fun(P) -> case N of 0 -> 0.0; _ -> lists:nth(min(N, floor(P / 100 * N) + 1), Sorted) end end,
    io:format("@@ {\"count\":~b,\"seconds\":~f,\"p50\":~f,\"p99\":~f,\"max\":~f,\"failures\":~b}~n",
              [N, Secs, Pct(50) / 1000, Pct(99) / 1000, lists:last([0 | Sorted]) / 1000, Failures]),
    halt(0).

wait_connected(Ms) when Ms =< 0 -> error(sidecar_not_connected);
wait_connected(Ms) ->
    case maps:get(connected, consult_grpc:status(), false) of
        true -> ok;
        false -> timer:sleep(50), wait_connected(Ms - 50)
    end.

%% Callers workers share a counter; each takes the next index until Count.
run(Count, Callers, Visitors, Offset) ->
    Counter = atomics:new(1, []),
    Self = self(),
    T0 = erlang:monotonic_time(microsecond),
    Pids = [spawn_link(fun() -> Self ! {done, self(), worker(Counter, Count, Visitors, Offset, [], 0)} end)
            || _ <- lists:seq(1, Callers)],
    Results = [receive {done, P, R} -> R after 120000 -> error(bench_timeout) end || P <- Pids],
    Secs = (erlang:monotonic_time(microsecond) - T0) / 1.0e6,
    {Secs, lists:append([L || {L, _} <- Results]), lists:sum([F || {_, F} <- Results])}.

worker(Counter, Count, Visitors, Offset, Lat, Fail) ->
    I = atomics:add_get(Counter, 1, 1),
    case I > Count of
        true -> {Lat, Fail};
        false ->
            T = erlang:monotonic_time(microsecond),
            case consult_grpc:filter(<<"localhost">>, stanza(Offset + I, Visitors), 5000) of
                {ok, #{action := A}} when A =/= reject ->
                    worker(Counter, Count, Visitors, Offset, [erlang:monotonic_time(microsecond) - T | Lat], Fail);
                _ ->
                    worker(Counter, Count, Visitors, Offset, Lat, Fail + 1)
            end
    end.

stanza(I, Visitors) ->
    V = integer_to_binary(I rem Visitors),
    Id = integer_to_binary(I),
    <<"<message xmlns='jabber:client' type='consult' to='shop_2@localhost' from='v", V/binary, "@localhost/web'"
      " qchatid='4' isHiddenMsg='0'><body msgType='1' maType='6' id='B", Id/binary, "'>hello ", Id/binary,
      "</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>">>.
