%% Test driver for consult_grpc, run by test/e2e/shim-grpc-client.test.ts:
%%   erl -noshell -pa ebin -pa ebin-test -eval 'consult_grpc_driver:main()'
%% Reads one Erlang term per line on stdin ("{filter, <<\"h\">>, <<\"x\">>, 500}."),
%% runs it and prints one line "@@ <json>" per command on stdout. Logs go to
%% stderr so they never interleave with results.
-module(consult_grpc_driver).

-export([main/0, on_inject/1]).

%% What on_inject saw: {{started | done, N}, Stanzas}, {{held, N}, Pid} and
%% {{proc, N}, Pid} (every process on_inject ran in, to know when all ended).
-define(INJECTS, consult_grpc_driver_injects).

main() ->
    ets:new(?INJECTS, [named_table, public, ordered_set]),
    logger:remove_handler(default),
    %% Info too: the client's connects, GOAWAYs and closed drains are events the tests wait for.
    logger:set_primary_config(level, info),
    logger:add_handler(default, logger_std_h,
                       #{config => #{type => standard_error},
                         filters => [{progress, {fun logger_filters:progress/2, stop}}]}),
    io:setopts(standard_io, [binary, {encoding, unicode}]),
    process_flag(trap_exit, true),
    loop().

loop() ->
    case io:get_line(standard_io, "") of
        eof -> halt(0);
        {error, _} -> halt(1);
        Line ->
            Result = try run(parse(Line))
                     catch Class:Reason:Stack -> {driver_error, Class, Reason, Stack}
                     end,
            io:put_chars(standard_io, ["@@ ", json(Result), $\n]),
            loop()
    end.

parse(Line) ->
    {ok, Tokens, _} = erl_scan:string(unicode:characters_to_list(Line)),
    {ok, Term} = erl_parse:parse_term(Tokens),
    Term.

run({start, Opts}) ->
    {ok, _Pid} = consult_grpc:start_link(Opts),
    ok;
run({connections, Names}) ->
    consult_grpc:set_connections(Names);
run(stop) ->
    gen_server:stop(consult_grpc);
run(alive) ->
    is_pid(whereis(consult_grpc));
run(status) ->
    consult_grpc:status();
run({status, Name}) ->
    consult_grpc:status(Name);
run({wait_status, Name, Key, Value, MaxMs}) ->
    wait_status(fun() -> consult_grpc:status(Name) end, Key, Value, MaxMs);
run({filter_to, Host, Target, Xml, Timeout}) ->
    consult_grpc:filter(Host, Target, Xml, Timeout);
run({cluster_event, Node, Up}) ->
    %% What net_kernel:monitor_nodes/1 sends each connection (the driver's
    %% node is not distributed).
    Msg = case Up of true -> {nodeup, Node}; false -> {nodedown, Node} end,
    [whereis(Name) ! Msg || Name <- consult_grpc:connections()],
    ok;
run({wait_status, Key, Value, MaxMs}) ->
    wait_status(fun consult_grpc:status/0, Key, Value, MaxMs);
run({filter, Host, Xml, Timeout}) ->
    consult_grpc:filter(Host, Xml, Timeout);
run({filter_timed, Host, Xml, Timeout}) ->
    %% The wall clock around the call, to check the deadline the client sends.
    T0 = erlang:system_time(millisecond),
    Result = consult_grpc:filter(Host, Xml, Timeout),
    #{t0 => T0, t1 => erlang:system_time(millisecond), result => Result};
run(injects) ->
    #{started => [S || {{started, _}, S} <- ets:tab2list(?INJECTS)],
      done => [S || {{done, _}, S} <- ets:tab2list(?INJECTS)]};
run({wait_inject, Stage, Stanza, MaxMs}) when Stage =:= started; Stage =:= done ->
    %% An on_inject call that reached Stage with Stanza among its stanzas.
    poll(fun() -> lists:any(fun(Stanzas) -> lists:member(Stanza, Stanzas) end,
                            [S || {{St, _}, S} <- ets:tab2list(?INJECTS), St =:= Stage])
         end, MaxMs);
run({wait_injects_ended, MaxMs}) ->
    %% Every process on_inject ran in has ended (returned or crashed): whatever
    %% InjectAck it was going to cast is in the connection's mailbox by now.
    Procs = fun() -> [Pid || {{proc, _}, Pid} <- ets:tab2list(?INJECTS)] end,
    poll(fun() -> not lists:any(fun erlang:is_process_alive/1, Procs()) end, MaxMs,
         fun() -> #{alive => [P || P <- Procs(), is_process_alive(P)]} end);
run(release_injects) ->
    Held = [Pid || {{held, _}, Pid} <- ets:tab2list(?INJECTS)],
    ets:match_delete(?INJECTS, {{held, '_'}, '_'}),
    [Pid ! release || Pid <- Held],
    length(Held);
run({filter_big, Host, Size, Timeout}) ->
    Sent = big_stanza(Size),
    case consult_grpc:filter(Host, Sent, Timeout) of
        {ok, V = #{stanza := Stanza, extra := Extra}} ->
            {ok, V#{stanza := byte_size(Stanza),
                    stanza_head => binary:part(Stanza, 0, min(40, byte_size(Stanza))),
                    extra := [byte_size(E) || E <- Extra],
                    echo_equal => Extra =:= [Sent]}};
        Error ->
            Error
    end;
run({burst, Procs, PerProc, Timeout}) ->
    burst(Procs, PerProc, Timeout);
run({filter_async, N, Host, Timeout}) ->
    Self = self(),
    Pids = [spawn(fun() -> Self ! {async, self(), consult_grpc:filter(Host, stanza(async, I), Timeout)} end)
            || I <- lists:seq(1, N)],
    put(async, Pids),
    ok;
run(collect_async) ->
    [receive {async, Pid, R} -> R after 30000 -> collect_timeout end || Pid <- get(async)];
run({notify, Event}) ->
    consult_grpc:notify(Event);
run({watched, Kind, Jid}) ->
    consult_grpc:watched(Kind, Jid);
run({wait_watched, Kind, Jid, MaxMs}) ->
    poll(fun() -> consult_grpc:watched(Kind, Jid) end, MaxMs);
run({unary, Host, Xml, Timeout}) ->
    consult_grpc:unary_filter(Host, Xml, Timeout);
run({encode_shim, Msg}) ->
    binary:encode_hex(iolist_to_binary(consult_pb:encode_shim_message(Msg)));
run({encode_event, Event}) ->
    binary:encode_hex(iolist_to_binary(consult_pb:encode_session_event(Event)));
run({decode_sidecar, Hex}) ->
    consult_pb:decode_sidecar_message(binary:decode_hex(Hex));
run(hpack_vectors) ->
    hpack_vectors().

%% The on_inject callback (start option on_inject => {consult_grpc_driver, on_inject}).
%% Records the stanzas; a stanza containing "crash" makes it crash, one
%% containing "hold" makes it wait for release_injects before it returns.
on_inject(Stanzas) ->
    ets:insert(?INJECTS, {{proc, erlang:unique_integer([monotonic])}, self()}),
    ets:insert(?INJECTS, {{started, erlang:unique_integer([monotonic])}, Stanzas}),
    Has = fun(Word) -> lists:any(fun(S) -> binary:match(S, Word) =/= nomatch end, Stanzas) end,
    Has(<<"crash">>) andalso error(injected_crash),
    Has(<<"hold">>) andalso
        begin
            ets:insert(?INJECTS, {{held, erlang:unique_integer([monotonic])}, self()}),
            receive release -> ok after 30000 -> ok end
        end,
    ets:insert(?INJECTS, {{done, erlang:unique_integer([monotonic])}, Stanzas}),
    ok.

%% Procs processes, each running PerProc concurrent callers; every caller
%% checks that the verdict echoes its own stanza (the test server puts the
%% request stanza into extra).
burst(Procs, PerProc, Timeout) ->
    Self = self(),
    Group = fun(P) ->
                    Me = self(),
                    Callers = [spawn_link(fun() -> Me ! {done, self(), one_call(P, I, Timeout)} end)
                               || I <- lists:seq(1, PerProc)],
                    Self ! {group, [receive {done, C, R} -> R end || C <- Callers]}
            end,
    [spawn_link(fun() -> Group(P) end) || P <- lists:seq(1, Procs)],
    Results = lists:append([receive {group, Rs} -> Rs after 60000 -> [{burst_timeout}] end
                            || _ <- lists:seq(1, Procs)]),
    Seqs = [S || {ok, S} <- Results],
    #{ok => length(Seqs),
      distinct_seqs => length(lists:usort(Seqs)),
      failures => lists:usort([R || R <- Results, element(1, R) =/= ok])}.

one_call(P, I, Timeout) ->
    Stanza = stanza(P, I),
    case consult_grpc:filter(<<"localhost">>, Stanza, Timeout) of
        {ok, #{action := pass, extra := [Stanza], seq := Seq}} -> {ok, Seq};
        {ok, V} -> {mismatch, V};
        Error -> Error
    end.

stanza(P, I) ->
    iolist_to_binary(io_lib:format("<message id='~p-~p' to='shop1@localhost'><body>hi</body></message>",
                                   [P, I])).

big_stanza(Size) ->
    Body = binary:copy(<<"x">>, Size),
    <<"<message id='big' to='shop1@localhost'><body>", Body/binary, "</body></message>">>.

%% Polls until Fun() is true: true, or after MaxMs [timed_out, MaxMs, Seen()]
%% (what the failure message shows).
poll(Fun, MaxMs) ->
    poll(Fun, MaxMs, fun() -> Fun() end).

poll(Fun, MaxMs, Seen) ->
    Deadline = erlang:monotonic_time(millisecond) + MaxMs,
    poll_until(Fun, Deadline, MaxMs, Seen).

poll_until(Fun, Deadline, MaxMs, Seen) ->
    case Fun() of
        true ->
            true;
        _ ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true -> {timed_out, MaxMs, Seen()};
                false -> timer:sleep(20), poll_until(Fun, Deadline, MaxMs, Seen)
            end
    end.

%% Value: the status field's value, or {at_least, N}.
wait_status(Status, Key, Value, MaxMs) ->
    Holds = fun(#{Key := V}) -> matches(V, Value);
               (_) -> false
            end,
    poll(fun() -> Holds(Status()) end, MaxMs, Status).

matches(V, {at_least, N}) -> is_integer(V) andalso V >= N;
matches(V, Value) -> V =:= Value.

%% RFC 7541 C.4 (Huffman, dynamic table) and C.6 (eviction with a 256-byte table).
hpack_vectors() ->
    C4 = ["828684418cf1e3c2e5f23a6ba0ab90f4ff",
          "828684be5886a8eb10649cbf",
          "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"],
    C6 = ["488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
          "4883640effc1c0bf",
          "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007"],
    #{c4 => decode_all(C4, consult_hpack:new()),
      c6 => decode_all(C6, consult_hpack:new(256)),
      int_1337 => consult_hpack:decode_int(consult_hpack:encode_int(1337, 5, 0), 5),
      roundtrip => element(2, consult_hpack:decode(
                                iolist_to_binary(consult_hpack:encode([{<<"a">>, <<"é"/utf8>>}])),
                                consult_hpack:new())),
      bad_index => consult_hpack:decode(<<16#bf>>, consult_hpack:new())}.

decode_all([], _D) ->
    [];
decode_all([Hex | Rest], D) ->
    {ok, Headers, D1} = consult_hpack:decode(binary:decode_hex(list_to_binary(Hex)), D),
    [[[N, V] || {N, V} <- Headers] | decode_all(Rest, D1)].

%% Minimal JSON: tuples and lists become arrays, atoms strings (except
%% true/false/undefined), binaries UTF-8 strings.
json(true) -> <<"true">>;
json(false) -> <<"false">>;
json(undefined) -> <<"null">>;
json(A) when is_atom(A) -> json(atom_to_binary(A));
json(N) when is_integer(N) -> integer_to_binary(N);
json(B) when is_binary(B) ->
    case unicode:characters_to_list(B) of
        Chars when is_list(Chars) -> [$", [escape(C) || C <- Chars], $"];
        _ -> json(#{non_utf8_hex => binary:encode_hex(B)})
    end;
json(T) when is_tuple(T) -> json(tuple_to_list(T));
json(L) when is_list(L) -> [$[, lists:join($,, [json(E) || E <- L]), $]];
json(M) when is_map(M) ->
    Pairs = [[json(key(K)), $:, json(V)] || {K, V} <- lists:sort(maps:to_list(M))],
    [${, lists:join($,, Pairs), $}];
json(Other) -> json(iolist_to_binary(io_lib:format("~p", [Other]))).

key(K) when is_atom(K) -> atom_to_binary(K);
key(K) when is_binary(K) -> K;
key(K) -> iolist_to_binary(io_lib:format("~p", [K])).

escape($") -> "\\\"";
escape($\\) -> "\\\\";
escape(C) when C < 16#20 -> io_lib:format("\\u~4.16.0b", [C]);
escape(C) -> C.
