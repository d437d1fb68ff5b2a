%% EUnit tests for what `ejabberdctl consult_status` and `consult_owned`
%% print: the pure text of consult_status, the command definitions of
%% consult_commands, and the figures a connection process keeps for them
%% (against consult_fake_sidecar). test/e2e/shim-commands.test.ts runs the
%% commands through a real ejabberd.
-module(consult_status_tests).

-include_lib("eunit/include/eunit.hrl").
-include("ejabberd_commands.hrl").

-export([counts_what_became_of_the_stanzas/1, down_with_the_reason_and_the_retry/1,
         owned_shops_and_the_sidecar_id/1]).

-import(consult_fake_sidecar, [start/2, accept/1, out/2, next/2, is/1, verdict/2, watch_frame/3,
                                call/2, await/1, wait/1]).

-define(STANZA, <<"<message to='shop@localhost'><body>hi</body></message>">>).

%% A connected connection as consult_grpc:status/1 gives it.
connected() ->
    #{running => true, name => consult_grpc, sidecar => <<"127.0.0.1:50051">>, connected => true,
      tls => false, draining => 0, reconnect_attempts => 0, reconnect_in => undefined,
      last_error => undefined, breaker => closed, probe_in_flight => false, consecutive_timeouts => 0,
      sidecar_id => <<"desk-a">>, owned => 2, told => true, forwarded => 12, verdicts => 11,
      timeouts => 1, failed => 0, pending => 0, notifications_queued => 0, notifications_dropped => 3}.

down() ->
    (connected())#{name => consult_grpc_2, sidecar => <<"10.0.0.12:50051">>, connected => false,
                   reconnect_attempts => 7, reconnect_in => 1600, last_error => econnrefused,
                   owned => 0}.

refused() -> #{unavailable => 4, circuit_open => 0, no_owner => 2}.

lines(Text) -> string:split(Text, "\n", all).

%%% The link

link_state_test_() ->
    [?_assertEqual(connected, consult_status:link_state(connected())),
     ?_assertEqual(down, consult_status:link_state(down())),
     %% Not connected yet, and no attempt failed: the first connect, or right after a GOAWAY.
     ?_assertEqual(connecting, consult_status:link_state((down())#{reconnect_attempts => 0})),
     ?_assertEqual(down, consult_status:link_state(#{running => false, name => consult_grpc}))].

%%% consult_status

one_connected_sidecar_test() ->
    ?assertEqual("mod_consult on ejabberd@localhost: 1 sidecar connection\n"
                 "consult_grpc (127.0.0.1:50051)\n"
                 "  link:           connected\n"
                 "  breaker:        closed (0 timeouts in a row)\n"
                 "  sidecar id:     desk-a\n"
                 "  shops owned:    2\n"
                 "  stanzas:        12 forwarded, 11 verdicts, 1 timed out, 0 failed, 0 waiting now\n"
                 "  notifications:  0 queued, 3 dropped\n"
                 "stanzas that got the failure_policy at once, no sidecar asked\n"
                 "  none connected: 4\n"
                 "  breaker open:   0\n"
                 "  no owner:       2\n",
                 consult_status:status_text('ejabberd@localhost', [connected()], refused())).

%% The example in the command's definition is what the command prints.
the_documented_example_is_real_test() ->
    [#ejabberd_commands{result_example = Example} | _] = consult_commands:get_commands_spec(),
    Conn = (connected())#{verdicts => 12, timeouts => 0, notifications_dropped => 0},
    ?assertEqual(Example, consult_status:status_text('ejabberd@localhost', [Conn],
                                                     #{unavailable => 0, circuit_open => 0, no_owner => 0})).

%% What consult_timing measured, stage by stage; nothing when nothing was timed.
timing_per_stage_test() ->
    Text = consult_status:status_text('ejabberd@localhost', [connected()], refused(),
                                      [{to_xml, 10, 3.25}, {round_trip, 10, 812.0}, {apply, 9, 40.5}]),
    Lines = lines(Text),
    ?assert(lists:member("mean time per consult stanza on this node, since it started", Lines)),
    ?assert(lists:member("  to XML:         3.3 us (10)", Lines) orelse lists:member("  to XML:         3.2 us (10)", Lines)),
    ?assert(lists:member("  round trip:     812.0 us (10)", Lines)),
    ?assert(lists:member("  applied:        40.5 us (9)", Lines)),
    ?assertEqual(consult_status:status_text(n, [connected()], refused()),
                 consult_status:status_text(n, [connected()], refused(), [])).

down_connection_says_why_and_when_it_retries_test() ->
    Text = consult_status:status_text(<<"ejabberd@localhost">>, [connected(), down()], refused()),
    Lines = lines(Text),
    ?assertEqual("mod_consult on ejabberd@localhost: 2 sidecar connections", hd(Lines)),
    ?assert(lists:member("consult_grpc_2 (10.0.0.12:50051)", Lines)),
    ?assert(lists:member("  link:           down (connection refused), retry 7 in 1.6 s", Lines)),
    %% The id it had: after a restart it may come back under another.
    ?assert(lists:member("  sidecar id:     desk-a (when last connected)", Lines)),
    ?assert(lists:member("  shops owned:    0", Lines)).

reasons_in_words_test_() ->
    Link = fun(Reason, Retry) ->
                   Text = consult_status:status_text(n, [(down())#{last_error => Reason, reconnect_in => Retry}],
                                                     refused()),
                   hd([L || "  link:" ++ _ = L <- lines(Text)])
           end,
    [?_assertEqual("  link:           down (no answer to the keepalive PING), retry 7 in 250 ms",
                   Link(keepalive_timeout, 250)),
     ?_assertEqual("  link:           down (the sidecar ended the stream: grpc-status 16, no valid token), retry 7",
                   Link({main_stream_ended, 1, {<<"16">>, <<"no valid token">>}}, undefined)),
     ?_assertEqual("  link:           down ({tls_alert,{unknown_ca,\"TLS client: unknown CA\"}}), retry 7 in 5.0 s",
                   Link({tls_alert, {unknown_ca, "TLS client: unknown CA"}}, 5000))].

not_running_test() ->
    Text = consult_status:status_text(n, [#{running => false, name => consult_grpc_3}], refused()),
    ?assertMatch([_, "consult_grpc_3", "  link:           down (the connection process is not running)" | _],
                 lines(Text)).

breaker_test_() ->
    Breaker = fun(S) ->
                      hd([L || "  breaker:" ++ _ = L <- lines(consult_status:status_text(n, [S], refused()))])
              end,
    C = connected(),
    [?_assertEqual("  breaker:        open: failing fast (5 timeouts in a row)",
                   Breaker(C#{breaker => open, consecutive_timeouts => 5})),
     ?_assertEqual("  breaker:        half-open: one probe request is testing the sidecar",
                   Breaker(C#{breaker => half_open, probe_in_flight => true})),
     ?_assertEqual("  breaker:        half-open: the next request tests the sidecar",
                   Breaker(C#{breaker => half_open})),
     ?_assertEqual("  breaker:        closed (1 timeout in a row)", Breaker(C#{consecutive_timeouts => 1}))].

tls_draining_and_no_id_yet_test() ->
    Lines = lines(consult_status:status_text(n, [(connected())#{tls => true, draining => 1, sidecar_id => <<>>}],
                                             refused())),
    ?assert(lists:member("  link:           connected over TLS, 1 old connection still answering", Lines)),
    ?assert(lists:member("  sidecar id:     (not told yet: its first watch list has not come)", Lines)).

%%% consult_owned

owned_test() ->
    ?assertEqual("consult_grpc (127.0.0.1:50051, sidecar desk-a): owns 2 shops\n"
                 "  shop_2@localhost\n"
                 "  shop_3@localhost  (lease epoch 4)\n"
                 "consult_grpc_2 (10.0.0.12:50051, sidecar desk-a): down: owns nothing here\n",
                 consult_status:owned_text([{connected(), [{<<"shop_2@localhost">>, 0}, {<<"shop_3@localhost">>, 4}]},
                                            {down(), []}])).

owned_nothing_test_() ->
    [?_assertEqual("consult_grpc (127.0.0.1:50051, sidecar desk-a): has not said yet which shops it owns\n",
                   consult_status:owned_text([{(connected())#{told => false}, []}])),
     ?_assertEqual("consult_grpc (127.0.0.1:50051, sidecar desk-a): owns 0 shops\n",
                   consult_status:owned_text([{connected(), []}])),
     ?_assertEqual("mod_consult has no sidecar connections\n", consult_status:owned_text([]))].

%% ejabberdctl prints the characters as UTF-8.
owned_shop_outside_ascii_test() ->
    Shop = <<"магазин@localhost"/utf8>>,
    Text = consult_status:owned_text([{connected(), [{Shop, 0}]}]),
    ?assertEqual(<<"  ", Shop/binary>>, lists:nth(2, [unicode:characters_to_binary(L) || L <- lines(Text)])).

%%% The commands

%% What ejabberd calls exists, with one argument per declared argument.
commands_test() ->
    Specs = consult_commands:get_commands_spec(),
    ?assertEqual([consult_owned, consult_status], lists:sort([N || #ejabberd_commands{name = N} <- Specs])),
    [begin
         {module, M} = code:ensure_loaded(M),
         ?assert(erlang:function_exported(M, F, length(Args))),
         ?assertMatch({_, string}, Result),
         ?assertEqual(admin, Policy)
     end || #ejabberd_commands{module = M, function = F, args = Args, result = Result, policy = Policy} <- Specs].

%%% What the connection process counts

conn_test_() ->
    consult_fake_sidecar:foreach(?MODULE, [counts_what_became_of_the_stanzas,
                                           down_with_the_reason_and_the_retry,
                                           owned_shops_and_the_sidecar_id]).

%% One stanza answered, one timed out, one lost with the connection.
counts_what_became_of_the_stanzas(L) ->
    start(L, #{breaker_threshold => 100}),
    A = accept(L),
    ?assertMatch(#{forwarded := 0, verdicts := 0, timeouts := 0, failed := 0}, consult_grpc:status()),
    Answered = call(filter, 5000),
    {{message, 1, {filter, Seq, _}}, A1} = next(A, is(message)),
    verdict(A1, Seq),
    ?assertMatch({ok, _}, await(Answered)),
    ?assertEqual({error, timeout}, consult_grpc:filter(<<"localhost">>, ?STANZA, 100)),
    {{message, 1, _}, A2} = next(A1, is(message)),
    Lost = call(filter, 5000),
    {{message, 1, _}, A3} = next(A2, is(message)),
    gen_tcp:close(consult_fake_sidecar:sock(A3)),
    ?assertEqual({error, unavailable}, await(Lost)),
    ?assertMatch(#{forwarded := 3, verdicts := 1, timeouts := 1, failed := 1, pending := 0},
                 consult_grpc:status()).

%% Nothing listens any more: the link is down, with the reason and the next retry.
down_with_the_reason_and_the_retry(L) ->
    start(L, #{}),
    A = accept(L),
    ?assertEqual(connected, consult_status:link_state(consult_grpc:status())),
    gen_tcp:close(L),
    gen_tcp:close(consult_fake_sidecar:sock(A)),
    wait(fun() -> maps:get(last_error, consult_grpc:status()) =:= econnrefused end),
    S = consult_grpc:status(),
    ?assertEqual(down, consult_status:link_state(S)),
    ?assertMatch(#{connected := false, reconnect_in := Ms} when is_integer(Ms), S),
    ?assert(lists:member("  link:           down (connection refused)",
                         [hd(string:split(Line, ", retry")) || Line <- lines(consult_commands:status())])),
    %% Asked with no connection up, the stanza fails at once and is counted for the node.
    consult_grpc:new_counters(),
    catch gen_server:stop(consult_grpc),
    #{unavailable := Before} = consult_grpc:refused(),
    ?assertEqual({error, unavailable}, consult_grpc:filter(<<"localhost">>, ?STANZA, 100)),
    ?assertMatch(#{unavailable := N} when N =:= Before + 1, consult_grpc:refused()).

owned_shops_and_the_sidecar_id(L) ->
    start(L, #{}),
    A = accept(L),
    out(A, watch_frame([<<"shop_2@localhost">>, <<"shop_1@localhost">>, <<"shop_9@localhost">>],
                       [<<"shop_2@localhost">>, <<"shop_1@localhost">>], <<"desk-a">>)),
    wait(fun() -> maps:get(owned, consult_grpc:status()) =:= 2 end),
    ?assertEqual([{<<"shop_1@localhost">>, 0}, {<<"shop_2@localhost">>, 0}], consult_grpc:owned(consult_grpc)),
    ?assertMatch(#{sidecar_id := <<"desk-a">>, told := true}, consult_grpc:status()),
    ?assertMatch([_, "  shop_1@localhost", "  shop_2@localhost" | _], lines(consult_commands:owned())),
    ?assert(lists:member("  sidecar id:     desk-a", lines(consult_commands:status()))).
