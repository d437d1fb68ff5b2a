%% EUnit and PropEr tests for consult_grpc's connection process
%% (consult_grpc_conn, consult_grpc_http2) against a fake HTTP/2 server
%% (consult_fake_sidecar); consult_grpc_sidecars_tests has the cases with
%% two sidecars. Run with `make -C erlang-shim eunit`.
%% test/e2e/shim-grpc-client.test.ts drives the same client against a real grpc-js
%% server.
-module(consult_grpc_tests).

-include_lib("eunit/include/eunit.hrl").

-export([prop_garbage_from_the_server/2, init/1]).
-export([token_and_hello/1, no_token_no_header/1, verdicts_and_pings/1, goaway_drains_the_old_connection/1,
         goaway_below_the_main_stream/1, window_update_zero_on_the_connection/1,
         window_update_overflow_on_the_connection/1, window_update_errors_on_a_stream/1,
         window_update_overflow_on_the_main_stream/1, initial_window_overflow/1,
         max_concurrent_streams/1, header_table_size_zero/1, header_block_limit/1,
         continuation_interleaved/1, stream_ids_run_out/1, notification_queue_bounded/1,
         keepalive/1, breaker_lets_one_probe_through/1, refused_stream_backs_off/1,
         goaway_on_terminate/1]).

-import(consult_fake_sidecar, [start/1, start/2, accept/1, accept/2, out/2, next/2, next_n/3, is/1,
                                verdict/2, unary_reply/3, verdict_bytes/1, watch_bytes/0,
                                grpc_frame/1, field/2, fields/1, varint_field/2, call/2, await/1, wait/1]).

-define(STANZA, <<"<message to='shop@localhost'><body>hi</body></message>">>).
-define(MAX_WINDOW, 16#7fffffff).

%%% Fixture

%% Every case: a listening socket, a client pointed at it (fast backoff, no
%% keepalive unless asked), quiet logs. The client is started unlinked, as
%% its supervisor would, and stopped afterwards.
client_test_() ->
    consult_fake_sidecar:foreach(
      ?MODULE, [token_and_hello, no_token_no_header, verdicts_and_pings, goaway_drains_the_old_connection,
                goaway_below_the_main_stream, window_update_zero_on_the_connection,
                window_update_overflow_on_the_connection, window_update_errors_on_a_stream,
                window_update_overflow_on_the_main_stream, initial_window_overflow,
                max_concurrent_streams, header_table_size_zero, header_block_limit,
                continuation_interleaved, stream_ids_run_out, notification_queue_bounded,
                keepalive, breaker_lets_one_probe_through, refused_stream_backs_off,
                goaway_on_terminate]).

%%% Cases

token_and_hello(L) ->
    start(L, #{token => <<"a-token-of-24-characters">>}),
    {ok, S} = gen_tcp:accept(L, 5000),
    {ok, _} = gen_tcp:recv(S, 24, 5000),
    Srv = consult_fake_sidecar:new(S),
    {{headers, 1, Headers, false}, Srv1} = next(Srv, is(headers)),
    ?assertEqual(<<"Bearer a-token-of-24-characters">>, proplists:get_value(<<"authorization">>, Headers)),
    ?assertEqual(<<"application/grpc">>, proplists:get_value(<<"content-type">>, Headers)),
    {{message, 1, {hello, Hello}}, Srv2} = next(Srv1, is(message)),
    ?assertEqual(<<"test@localhost">>, proplists:get_value(1, fields(Hello))),
    %% Unary calls carry it too.
    Caller = call(unary, 5000),
    {{headers, 3, Unary, false}, _} = next(Srv2, is(headers)),
    ?assertEqual(<<"Bearer a-token-of-24-characters">>, proplists:get_value(<<"authorization">>, Unary)),
    ?assertEqual(<<"5000m">>, proplists:get_value(<<"grpc-timeout">>, Unary)),
    ?assertEqual(<<"/consult.v1.StanzaFilter/Filter">>, proplists:get_value(<<":path">>, Unary)),
    gen_server:stop(consult_grpc),
    ?assertEqual({error, unavailable}, await(Caller)).

no_token_no_header(L) ->
    start(L),
    {ok, S} = gen_tcp:accept(L, 5000),
    {ok, _} = gen_tcp:recv(S, 24, 5000),
    {{headers, 1, Headers, false}, _} = next(consult_fake_sidecar:new(S), is(headers)),
    ?assertEqual(undefined, proplists:get_value(<<"authorization">>, Headers)).

verdicts_and_pings(L) ->
    start(L),
    Srv = accept(L),
    %% A PING from the server is answered; unknown frames and PRIORITY are ignored.
    out(Srv, consult_h2:ping(<<"pingpong">>)),
    out(Srv, [consult_h2:frame(16#fa, 0, 0, <<"?">>), consult_h2:frame(2, 0, 1, <<0:1, 3:31, 9>>)]),
    {_, Srv1} = next(Srv, fun(F) -> F =:= {ping_ack, <<"pingpong">>} end),
    Caller = call(filter, 5000),
    {{message, 1, {filter, Seq, ?STANZA}}, Srv2} = next(Srv1, is(message)),
    verdict(Srv2, Seq),
    ?assertMatch({ok, #{seq := Seq, action := pass}}, await(Caller)),
    %% A unary call: headers, message, trailers, split across frames as they come.
    Unary = call(unary, 5000),
    {{headers, 3, _, false}, Srv3} = next(Srv2, is(headers)),
    {{message, 3, {request, 0}}, Srv4} = next(Srv3, is(message)),
    unary_reply(Srv4, 3, 0),
    ?assertMatch({ok, #{seq := 0, action := pass}}, await(Unary)),
    ?assertMatch(#{connected := true, pending := 0, streams := 1}, consult_grpc:status()).

%% GOAWAY covering the main stream: what was sent on it is still answered
%% there, a unary stream above last-stream-id fails, new requests go to a
%% new connection, and the old one is closed once it owes nothing.
goaway_drains_the_old_connection(L) ->
    start(L),
    A = accept(L),
    %% Its hello arrived, but the client may publish "connected" a moment later.
    wait(fun() -> maps:get(connected, consult_grpc:status()) end),
    Old = [call(filter, 5000) || _ <- [1, 2]],
    {Seqs, A1} = lists:mapfoldl(fun(_, S) ->
                                        {{message, 1, {filter, Seq, _}}, S1} = next(S, is(message)),
                                        {Seq, S1}
                                end, A, Old),
    Unary = call(unary, 5000),
    {{headers, 3, _, false}, A2} = next(A1, is(headers)),
    out(A2, consult_h2:goaway(1, no_error, <<"restarting">>)),
    ?assertEqual({error, unavailable}, await(Unary)),
    B = accept(L),
    wait(fun() -> maps:get(draining, consult_grpc:status()) =:= 1 end),
    New = call(filter, 5000),
    {{message, 1, {filter, NewSeq, _}}, B1} = next(B, is(message)),
    verdict(B1, NewSeq),
    ?assertMatch({ok, #{seq := NewSeq}}, await(New)),
    %% The old connection answers what it owes, then the client lets it go.
    [verdict(A2, Seq) || Seq <- lists:reverse(Seqs)],
    [?assertMatch({ok, #{seq := Seq}}, await(C)) || {C, Seq} <- lists:zip(Old, Seqs)],
    {{goaway, 0, no_error, _}, A3} = next(A2, is(goaway)),
    ?assertMatch({closed, _}, element(1, next(A3, is(closed)))),
    ?assertMatch(#{draining := 0, connected := true, pending := 0}, consult_grpc:status()).

%% A GOAWAY that does not cover the main stream: nothing on it will be
%% answered, so its callers fail now and the client reconnects.
goaway_below_the_main_stream(L) ->
    start(L),
    A = accept(L),
    Caller = call(filter, 5000),
    {{message, 1, _}, A1} = next(A, is(message)),
    out(A1, consult_h2:goaway(0, no_error, <<>>)),
    ?assertEqual({error, unavailable}, await(Caller)),
    accept(L).

window_update_zero_on_the_connection(L) ->
    start(L),
    A = accept(L),
    Caller = call(filter, 5000),
    {{message, 1, _}, A1} = next(A, is(message)),
    out(A1, consult_h2:frame(8, 0, 0, <<0:32>>)),
    {{goaway, 0, protocol_error, _}, A2} = next(A1, is(goaway)),
    next(A2, is(closed)),
    ?assertEqual({error, unavailable}, await(Caller)),
    accept(L).

window_update_overflow_on_the_connection(L) ->
    start(L),
    A = accept(L),
    %% 65535 minus what the client sent, plus 2^31-1: past the limit (6.9.1).
    out(A, consult_h2:window_update(0, ?MAX_WINDOW)),
    {{goaway, 0, flow_control_error, _}, A1} = next(A, is(goaway)),
    next(A1, is(closed)),
    accept(L).

%% Errors of a unary stream end that stream (RST_STREAM) and its call, not
%% the connection.
window_update_errors_on_a_stream(L) ->
    start(L),
    A = accept(L),
    One = call(unary, 5000),
    {{headers, 3, _, _}, A1} = next(A, is(headers)),
    out(A1, consult_h2:frame(8, 0, 3, <<0:32>>)),
    {{rst_stream, 3, protocol_error}, A2} = next(A1, is(rst_stream)),
    ?assertEqual({error, {stream_error, protocol_error}}, await(One)),
    Two = call(unary, 5000),
    {{headers, 5, _, _}, A3} = next(A2, is(headers)),
    out(A3, consult_h2:window_update(5, ?MAX_WINDOW)),
    {{rst_stream, 5, flow_control_error}, A4} = next(A3, is(rst_stream)),
    ?assertEqual({error, {stream_error, flow_control_error}}, await(Two)),
    %% The connection is fine.
    Caller = call(filter, 5000),
    {{message, 1, {filter, Seq, _}}, A5} = next(A4, is(message)),
    verdict(A5, Seq),
    ?assertMatch({ok, _}, await(Caller)).

%% Without its main stream the connection is of no use: reset, reconnect.
window_update_overflow_on_the_main_stream(L) ->
    start(L),
    A = accept(L),
    out(A, consult_h2:window_update(1, ?MAX_WINDOW)),
    {{rst_stream, 1, flow_control_error}, _} = next(A, is(rst_stream)),
    accept(L).

%% A SETTINGS_INITIAL_WINDOW_SIZE that pushes an open stream's window past
%% 2^31-1 is a connection error (6.9.2).
initial_window_overflow(L) ->
    start(L),
    A = accept(L),
    out(A, consult_h2:window_update(1, ?MAX_WINDOW - 65535)),
    out(A, consult_h2:settings([{initial_window_size, 65536 + 1000}])),
    {{goaway, 0, flow_control_error, _}, _} = next(A, is(goaway)),
    accept(L).

max_concurrent_streams(L) ->
    start(L),
    A = accept(L, [{max_concurrent_streams, 2}]),
    {_, A1} = next(A, fun(F) -> F =:= settings_ack end),
    wait(fun() -> maps:get(max_concurrent_streams, maps:get(peer_settings, consult_grpc:status())) =:= 2 end),
    One = call(unary, 5000),
    {{headers, 3, _, _}, A2} = next(A1, is(headers)),
    %% The main stream and stream 3 are open: a third would be refused.
    T0 = erlang:monotonic_time(millisecond),
    ?assertEqual({error, too_many_streams}, consult_grpc:unary_filter(<<"localhost">>, ?STANZA, 5000)),
    ?assert(erlang:monotonic_time(millisecond) - T0 < 100),
    unary_reply(A2, 3, 0),
    ?assertMatch({ok, _}, await(One)),
    Two = call(unary, 5000),
    {{headers, 5, _, _}, _} = next(A2, is(headers)),
    ?assert(is_pid(Two)).

%% The encoder never uses the dynamic table, so a table of 0 changes nothing:
%% the client's next header block decodes with a 0-byte table.
header_table_size_zero(L) ->
    start(L),
    A = accept(L, [{header_table_size, 0}]),
    {_, A1} = next(A, fun(F) -> F =:= settings_ack end),
    Caller = call(unary, 5000),
    {{headers_raw, 3, Block}, _} = next(consult_fake_sidecar:raw_headers(A1), is(headers_raw)),
    ?assertMatch({ok, _, _}, consult_hpack:decode(Block, consult_hpack:new(0))),
    ?assert(is_pid(Caller)).

%% A header block of up to 64 KiB over CONTINUATIONs is fine; one larger
%% ends the connection (ENHANCE_YOUR_CALM) without waiting for its end.
header_block_limit(L) ->
    start(L),
    A = accept(L),
    One = call(unary, 5000),
    {{headers, 3, _, _}, A1} = next(A, is(headers)),
    Big = iolist_to_binary(consult_hpack:encode([{<<":status">>, <<"200">>},
                                                  {<<"content-type">>, <<"application/grpc">>},
                                                  {<<"x-pad">>, binary:copy(<<"p">>, 40000)}])),
    out(A1, consult_h2:headers(3, Big, false, 16384)),
    out(A1, consult_h2:data(3, grpc_frame(verdict_bytes(0)), false)),
    out(A1, consult_h2:headers(3, consult_hpack:encode([{<<"grpc-status">>, <<"0">>}]), true, 16384)),
    ?assertMatch({ok, _}, await(One)),
    Two = call(unary, 5000),
    {{headers, 5, _, _}, A2} = next(A1, is(headers)),
    out(A2, consult_h2:frame(1, 0, 5, binary:copy(<<0>>, 16384))),
    [out(A2, consult_h2:frame(9, 0, 5, binary:copy(<<0>>, 16384))) || _ <- [1, 2, 3, 4]],
    {{goaway, 0, enhance_your_calm, _}, _} = next(A2, is(goaway)),
    ?assertEqual({error, unavailable}, await(Two)),
    accept(L).

%% Between HEADERS and its last CONTINUATION nothing else may come (6.10).
continuation_interleaved(L) ->
    start(L),
    A = accept(L),
    out(A, consult_h2:frame(1, 0, 1, <<>>)),
    out(A, consult_h2:ping(<<"12345678">>)),
    {{goaway, 0, protocol_error, _}, _} = next(A, is(goaway)),
    accept(L).

%% When the next stream id would pass the limit (2^31-1; 5 here), the client
%% goes to a new connection, saying GOAWAY on the old one.
stream_ids_run_out(L) ->
    start(L, #{max_stream_id => 5}),
    A = accept(L),
    A2 = lists:foldl(fun(Id, S) ->
                             C = call(unary, 5000),
                             {{headers, Id, _, _}, S1} = next(S, is(headers)),
                             unary_reply(S1, Id, 0),
                             ?assertMatch({ok, _}, await(C)),
                             S1
                     end, A, [3, 5]),
    Third = call(unary, 5000),
    {{goaway, 0, no_error, _}, _} = next(A2, is(goaway)),
    B = accept(L),
    {{headers, 3, _, _}, B1} = next(B, is(headers)),
    unary_reply(B1, 3, 0),
    ?assertMatch({ok, _}, await(Third)),
    ?assertMatch(#{draining := 0, next_stream_id := 5}, consult_grpc:status()).

%% With the send window closed, notifications wait; past 10,000 they are
%% dropped and counted. When the window opens, the queue drains.
notification_queue_bounded(L) ->
    start(L),
    A = accept(L, [{initial_window_size, 0}]),
    {_, A1} = next(A, fun(F) -> F =:= settings_ack end),
    Event = #{kind => session_open, jid => <<"agent@localhost/r">>},
    [consult_grpc:notify(Event) || _ <- lists:seq(1, 10050)],
    ?assertMatch(#{notifications_queued := 10000, notifications_dropped := 50}, consult_grpc:status()),
    out(A1, [consult_h2:window_update(0, 1 bsl 24), consult_h2:window_update(1, 1 bsl 24)]),
    {_, _} = next_n(A1, 10000, fun({message, 1, {event, _}}) -> true; (_) -> false end),
    ?assertMatch(#{notifications_queued := 0, notifications_dropped := 50}, consult_grpc:status()).

%% PINGs every keepalive_interval; no ACK within keepalive_timeout and the
%% connection goes, its callers failing at once rather than timing out.
keepalive(L) ->
    start(L, #{keepalive_interval => 200, keepalive_timeout => 200}),
    A = accept(L),
    {{ping, O1}, A1} = next(A, is(ping)),
    out(A1, consult_h2:ping_ack(O1)),
    {{ping, O2}, A2} = next(A1, is(ping)),
    ?assertNotEqual(O1, O2),
    out(A2, consult_h2:ping_ack(O2)),
    Caller = call(filter, 10000),
    {{message, 1, _}, A3} = next(A2, is(message)),
    %% Silence from now on.
    T0 = erlang:monotonic_time(millisecond),
    {{ping, _}, A4} = next(A3, is(ping)),
    ?assertEqual({error, unavailable}, await(Caller)),
    Took = erlang:monotonic_time(millisecond) - T0,
    ?assert(Took =< 200 + 200 + 150),
    next(A4, is(closed)),
    accept(L).

%% Half-open: exactly one request goes to the sidecar; the others fail fast
%% with circuit_open until its verdict closes the breaker (or its timeout
%% opens it again).
breaker_lets_one_probe_through(L) ->
    start(L, #{breaker_threshold => 1, breaker_cooldown => 300}),
    A = accept(L),
    ?assertEqual({error, timeout}, consult_grpc:filter(<<"localhost">>, ?STANZA, 100)),
    {{message, 1, _}, A1} = next(A, is(message)),
    ?assertEqual({error, circuit_open}, consult_grpc:filter(<<"localhost">>, ?STANZA, 100)),
    timer:sleep(350),
    %% The probe times out: another cooldown.
    Callers = [call(filter, 200) || _ <- lists:seq(1, 10)],
    Results = [await(C) || C <- Callers],
    ?assertEqual([{error, circuit_open}], lists:usort(Results -- [{error, timeout}])),
    ?assertEqual(1, length([R || R <- Results, R =:= {error, timeout}])),
    {{message, 1, _}, A2} = next(A1, is(message)),
    ?assertEqual({error, circuit_open}, consult_grpc:filter(<<"localhost">>, ?STANZA, 100)),
    ?assertMatch(#{breaker := open}, consult_grpc:status()),
    timer:sleep(350),
    %% This probe is answered: closed again.
    Probe = call(filter, 5000),
    wait(fun() -> maps:get(probe_in_flight, consult_grpc:status()) end),
    Others = [consult_grpc:filter(<<"localhost">>, ?STANZA, 5000) || _ <- lists:seq(1, 5)],
    ?assertEqual([{error, circuit_open}], lists:usort(Others)),
    {{message, 1, {filter, Seq, _}}, A3} = next(A2, is(message)),
    verdict(A3, Seq),
    ?assertMatch({ok, _}, await(Probe)),
    ?assertMatch(#{breaker := closed, probe_in_flight := false}, consult_grpc:status()),
    After = call(filter, 5000),
    {{message, 1, {filter, Seq2, _}}, A4} = next(A3, is(message)),
    verdict(A4, Seq2),
    ?assertMatch({ok, _}, await(After)).

%% A refusal (grpc-status 16 in a trailers-only answer to the main stream)
%% is retried with a growing backoff, not at once in a loop.
refused_stream_backs_off(L) ->
    start(L, #{backoff_min => 50, backoff_max => 400}),
    T0 = erlang:monotonic_time(millisecond),
    Times = refuse_until(L, T0 + 1500, []),
    %% 50, 100, 200, 400, 400 ms apart: 6 or so in 1.5 s; a reset to 50 ms
    %% each time would be 20 or more.
    ?assert(length(Times) >= 4 andalso length(Times) =< 8),
    Gaps = [B - A || {A, B} <- lists:zip(lists:droplast(Times), tl(Times))],
    ?assert(lists:last(Gaps) >= 300).

refuse_until(L, Deadline, Acc) ->
    case erlang:monotonic_time(millisecond) of
        Now when Now >= Deadline ->
            lists:reverse(Acc);
        Now ->
            case gen_tcp:accept(L, Deadline - Now) of
                {ok, S} ->
                    T = erlang:monotonic_time(millisecond),
                    {ok, _} = gen_tcp:recv(S, 24, 5000),
                    Srv = consult_fake_sidecar:new(S),
                    out(Srv, consult_h2:settings([])),
                    {_, Srv1} = next(Srv, is(headers)),
                    out(Srv1, consult_h2:headers(1, consult_hpack:encode(
                                                      [{<<":status">>, <<"200">>},
                                                       {<<"content-type">>, <<"application/grpc">>},
                                                       {<<"grpc-status">>, <<"16">>},
                                                       {<<"grpc-message">>, <<"a valid shim token is required">>}]),
                                                 true, 16384)),
                    next(Srv1, is(closed)),
                    refuse_until(L, Deadline, [T | Acc]);
                {error, timeout} ->
                    lists:reverse(Acc)
            end
    end.

goaway_on_terminate(L) ->
    start(L),
    A = accept(L),
    gen_server:stop(consult_grpc),
    {{goaway, 0, no_error, _}, A1} = next(A, is(goaway)),
    next(A1, is(closed)).

%%% Random and truncated bytes from the server

%% Whatever the server sends, the client never crashes: it drops the
%% connection (or waits for more) and connects again. It runs under a
%% supervisor as strict as ejabberd_gen_mod_sup (10 restarts in 1 s), which
%% must never restart it.
garbage_test_() ->
    consult_properties:needing_proper(
      {timeout, 300,
       fun() ->
               L = consult_fake_sidecar:setup(),
               {ok, Port} = inet:port(L),
               {ok, Sup} = supervisor:start_link(?MODULE, Port),
               unlink(Sup),
               [{consult_grpc, Pid, worker, _}] = supervisor:which_children(Sup),
               try
                   ?assertEqual(true, proper:quickcheck(prop_garbage_from_the_server(L, Pid),
                                                        [quiet, long_result, {numtests, 300}])),
                   ?assertEqual([{consult_grpc, Pid, worker, [consult_grpc_conn]}],
                                supervisor:which_children(Sup)),
                   ?assertMatch(#{running := true}, consult_grpc:status())
               after
                   exit(Sup, shutdown),
                   gen_tcp:close(L),
                   logger:set_primary_config(level, notice)
               end
       end}).

init(Port) ->
    {ok, {#{strategy => one_for_one, intensity => 10, period => 1},
          [#{id => consult_grpc,
             start => {consult_grpc, start_link,
                       [#{host => "127.0.0.1", port => Port, hosts => [<<"localhost">>],
                          node => <<"test@localhost">>, backoff_min => 1, backoff_max => 5,
                          keepalive_interval => infinity}]},
             restart => permanent, shutdown => 2000, type => worker, modules => [consult_grpc_conn]}]}}.

prop_garbage_from_the_server(Listener, Client) ->
    proper:forall(garbage(),
                  fun(Bytes) ->
                          {ok, S} = gen_tcp:accept(Listener, 5000),
                          {ok, _} = gen_tcp:recv(S, 24, 5000),
                          gen_tcp:send(S, Bytes),
                          %% Let the client chew on it (and a caller wait on it), then hang up.
                          Caller = call(filter, 50),
                          timer:sleep(5),
                          gen_tcp:close(S),
                          Result = await(Caller),
                          whereis(consult_grpc) =:= Client
                              andalso (lists:member(Result, [{error, unavailable}, {error, timeout},
                                                             {error, circuit_open}])
                                       orelse element(1, Result) =:= ok)
                  end).

garbage() ->
    Valid = valid_server_stream(),
    proper_types:union(
      [proper_types:binary(),
       %% A valid stream cut anywhere.
       proper_types:bind({Valid, proper_types:integer(0, 400)},
                         fun({V, N}) -> binary:part(V, 0, min(N, byte_size(V))) end, false),
       %% A valid stream with bytes flipped.
       proper_types:bind({Valid, proper_types:list({proper_types:integer(0, 400), proper_types:byte()})},
                         fun({V, Flips}) -> flip(V, Flips) end, false),
       %% Frames of any type, flags and stream with random payloads.
       proper_types:bind(proper_types:list({proper_types:integer(0, 12), proper_types:byte(),
                                            proper_types:integer(0, 7), proper_types:binary()}),
                         fun(Fs) -> iolist_to_binary([consult_h2:frame(T, F, I, P) || {T, F, I, P} <- Fs]) end,
                         false),
       %% Valid frames, then random ones.
       proper_types:bind({Valid, proper_types:binary()}, fun({V, B}) -> <<V/binary, B/binary>> end, false)]).

valid_server_stream() ->
    proper_types:bind(proper_types:integer(1, 5),
                      fun(Seq) ->
                              iolist_to_binary(
                                [consult_h2:settings([{max_concurrent_streams, 100}]),
                                 consult_h2:settings_ack(),
                                 consult_h2:headers(1, consult_hpack:encode([{<<":status">>, <<"200">>}]), false, 16384),
                                 consult_h2:data(1, grpc_frame(watch_bytes()), false),
                                 consult_h2:data(1, grpc_frame(field(1, varint_field(1, Seq))), false),
                                 consult_h2:ping(<<"abcdefgh">>),
                                 consult_h2:window_update(0, 1000)])
                      end, false).

flip(Bin, []) -> Bin;
flip(Bin, [{Pos, Byte} | Rest]) when Pos < byte_size(Bin) ->
    <<Before:Pos/binary, _, After/binary>> = Bin,
    flip(<<Before/binary, Byte, After/binary>>, Rest);
flip(Bin, [_ | Rest]) -> flip(Bin, Rest).

