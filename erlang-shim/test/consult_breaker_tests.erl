%% EUnit tests for consult_breaker, the pure circuit breaker (times are
%% given, in ms). consult_grpc_tests checks it through the connection.
-module(consult_breaker_tests).

-include_lib("eunit/include/eunit.hrl").

%% Threshold 3, cooldown 100 ms.
new() -> consult_breaker:new(3, 100).

fail(B, Reqs, Now) -> lists:foldl(fun(R, Acc) -> consult_breaker:failure(R, Now, Acc) end, B, Reqs).

opens_after_threshold_test() ->
    B = fail(new(), [1, 2], 0),
    ?assertEqual(closed, consult_breaker:gate(B, 0)),
    ?assertEqual(2, consult_breaker:failures(B)),
    B1 = consult_breaker:failure(3, 10, B),
    ?assertEqual({open, 110}, consult_breaker:state(B1)),
    ?assertEqual(open, consult_breaker:gate(B1, 109)),
    ?assertEqual({open, 110}, consult_breaker:published(B1)).

%% A verdict in between starts the count again.
success_resets_the_count_test() ->
    B = consult_breaker:success(fail(new(), [1, 2], 0)),
    ?assertEqual(0, consult_breaker:failures(B)),
    ?assertEqual(closed, consult_breaker:state(fail(B, [3, 4], 0))).

%% After the cooldown one request probes; the others fail fast while it is out.
one_probe_test() ->
    B = fail(new(), [1, 2, 3], 0),
    ?assertEqual(probe, consult_breaker:gate(B, 100)),
    P = consult_breaker:probing(4, B),
    ?assertEqual(open, consult_breaker:gate(P, 150)),
    ?assertEqual(probing, consult_breaker:published(P)),
    %% Its verdict closes the breaker.
    C = consult_breaker:success(P),
    ?assertEqual(closed, consult_breaker:gate(C, 150)),
    ?assertEqual(closed, consult_breaker:published(C)).

probe_timeout_reopens_test() ->
    P = consult_breaker:probing(4, fail(new(), [1, 2, 3], 0)),
    %% A late timeout of an earlier request changes nothing but the count.
    P1 = consult_breaker:failure(2, 120, P),
    ?assertEqual(probing, consult_breaker:published(P1)),
    R = consult_breaker:failure(4, 130, P1),
    ?assertEqual({open, 230}, consult_breaker:published(R)),
    ?assertEqual(open, consult_breaker:gate(R, 200)),
    ?assertEqual(probe, consult_breaker:gate(R, 230)).

%% A probe lost with its connection no longer blocks the next one.
lost_probe_test() ->
    P = consult_breaker:probing(4, fail(new(), [1, 2, 3], 0)),
    ?assertEqual(P, consult_breaker:lost([7, 8], P)),
    L = consult_breaker:lost([4, 7], P),
    ?assertEqual(probe, consult_breaker:gate(L, 100)).

conn_state_test_() ->
    [?_assertEqual(closed, consult_breaker:conn_state(closed, 5)),
     ?_assertEqual(open, consult_breaker:conn_state({open, 10}, 5)),
     ?_assertEqual(probe, consult_breaker:conn_state({open, 10}, 10)),
     ?_assertEqual(open, consult_breaker:conn_state(probing, 50))].

status_test_() ->
    B = fail(new(), [1, 2, 3], 0),
    [?_assertEqual(#{breaker => closed, probe_in_flight => false, consecutive_timeouts => 0},
                   consult_breaker:status(new(), 0)),
     ?_assertEqual(#{breaker => open, probe_in_flight => false, consecutive_timeouts => 3},
                   consult_breaker:status(B, 50)),
     ?_assertEqual(#{breaker => half_open, probe_in_flight => true, consecutive_timeouts => 3},
                   consult_breaker:status(consult_breaker:probing(4, B), 100))].
