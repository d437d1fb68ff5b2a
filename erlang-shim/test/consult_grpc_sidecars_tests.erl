%% EUnit tests for consult_grpc with two sidecars, as mod_consult starts
%% them: connections consult_grpc and consult_grpc_2, each to its own fake
%% server (consult_fake_sidecar). Run with `make -C erlang-shim eunit`.
-module(consult_grpc_sidecars_tests).

-include_lib("eunit/include/eunit.hrl").

-export([owner_decides_its_shops/1, notifications_and_cluster_events_to_all/1,
         a_draining_connection_owns_nothing/1]).

-import(consult_fake_sidecar, [start/2, accept/1, out/2, next/2, is/1, verdict/2, watch_frame/3, fields/1,
                                await/1, wait/1]).

-define(STANZA, <<"<message to='shop@localhost'><body>hi</body></message>">>).

two_sidecars_test_() ->
    Names = [consult_grpc, consult_grpc_2],
    {foreach,
     fun() ->
             logger:set_primary_config(level, none),
             Ls = [consult_fake_sidecar:listener() || _ <- Names],
             consult_grpc:set_connections(Names),
             lists:zip(Names, Ls)
     end,
     fun(Conns) ->
             [catch gen_server:stop(Name) || {Name, _} <- Conns],
             [gen_tcp:close(L) || {_, L} <- Conns],
             consult_grpc:set_connections([]),
             logger:set_primary_config(level, notice)
     end,
     [fun(Conns) -> {atom_to_list(Name), {timeout, 30, fun() -> ?MODULE:Name(Conns) end}} end
      || Name <- [owner_decides_its_shops, notifications_and_cluster_events_to_all,
                  a_draining_connection_owns_nothing]]}.

%%% Two sidecars

-define(S1, <<"s1@localhost">>).
-define(S2, <<"s2@localhost">>).

start_named(Name, L) ->
    start(L, #{name => Name}).

%% A stanza to a shop goes to the connection whose sidecar owns it, anything
%% else to the first connected one; ownership moves with the watch lists
%% (the newest claim wins) and is gone with the connection.
owner_decides_its_shops([{A, LA}, {B, LB}]) ->
    start_named(A, LA),
    start_named(B, LB),
    SA = accept(LA),
    SB = accept(LB),
    out(SA, watch_frame([?S1, ?S2], [?S1], <<"a">>)),
    out(SB, watch_frame([?S1, ?S2], [?S2], <<"b">>)),
    wait(fun() -> owned(A) =:= 1 andalso owned(B) =:= 1 end),
    ?assert(consult_grpc:watched(shop, ?S2)),
    SA1 = answered(?S1, SA),
    SB1 = answered(?S2, SB),
    SA2 = answered(any, SA1),
    %% B takes s1 while A still lists it: the newer claim wins.
    out(SB1, watch_frame([?S1, ?S2], [?S1, ?S2], <<"b">>)),
    wait(fun() -> owned(B) =:= 2 end),
    SB2 = answered(?S1, SB1),
    out(SA2, watch_frame([?S1, ?S2], [], <<"a">>)),
    wait(fun() -> owned(A) =:= 0 end),
    SB3 = answered(?S1, SB2),
    %% B goes: its shops have no owner, at once (even once it has
    %% reconnected, until its sidecar claims them again); other stanzas go to A.
    gen_tcp:close(consult_fake_sidecar:sock(SB3)),
    wait(fun() -> owned(B) =:= 0 end),
    ?assertEqual({error, no_owner}, consult_grpc:filter(<<"localhost">>, ?S1, ?STANZA, 5000)),
    ?assertEqual({error, no_owner}, consult_grpc:filter(<<"localhost">>, ?S2, ?STANZA, 5000)),
    SA3 = answered(any, SA2),
    %% Still relevant: B's last list counts until B says otherwise.
    ?assert(consult_grpc:watched(shop, ?S2)),
    SB4 = accept(LB),
    wait(fun() -> maps:get(connected, consult_grpc:status(B)) end),
    %% Back, but it has not said what it owns yet: it may own s1, so it is asked
    %% (its sidecar refuses what it does not decide).
    SB5 = answered(?S1, SB4),
    out(SB5, watch_frame([?S1, ?S2], [], <<"b">>)),
    wait(fun() -> maps:get(sidecar_id, consult_grpc:status(B)) =:= <<"b">> end),
    timer:sleep(50),
    %% Now every connected sidecar has said, and none owns s1.
    ?assertEqual({error, no_owner}, consult_grpc:filter(<<"localhost">>, ?S1, ?STANZA, 5000)),
    out(SA3, watch_frame([?S1, ?S2], [?S1], <<"a">>)),
    wait(fun() -> owned(A) =:= 1 end),
    _ = answered(?S1, SA3),
    out(SB5, watch_frame([?S1, ?S2], [?S2], <<"b">>)),
    wait(fun() -> owned(B) =:= 1 end),
    _ = answered(?S2, SB5),
    ?assertMatch([#{name := A, owned := 1, sidecar_id := <<"a">>},
                  #{name := B, owned := 1, sidecar_id := <<"b">>}], consult_grpc:status()).

%% Events go to every connection; each tells its sidecar about nodes that
%% come and go, and its Hello lists the cluster.
notifications_and_cluster_events_to_all([{A, LA}, {B, LB}]) ->
    start_named(A, LA),
    start_named(B, LB),
    {ok, S} = gen_tcp:accept(LA, 5000),
    {ok, _} = gen_tcp:recv(S, 24, 5000),
    {{message, 1, {hello, Hello}}, SA} = next(consult_fake_sidecar:new(S), is(message)),
    ?assertEqual([<<"test@localhost">>], proplists:get_all_values(4, fields(Hello))),
    SB = accept(LB),
    wait(fun() -> lists:all(fun(#{connected := C}) -> C end, consult_grpc:status()) end),
    consult_grpc:notify(#{kind => session_open, jid => <<"agent@localhost/r">>}),
    %% What net_kernel:monitor_nodes/1 sends (this test node is not distributed).
    [whereis(Name) ! {nodeup, 'n2@host'} || Name <- [A, B]],
    [whereis(Name) ! {nodedown, 'n2@host'} || Name <- [A, B]],
    lists:foreach(
      fun(Srv) ->
              {{message, 1, {event, Ev}}, Srv1} = next(Srv, is(message)),
              ?assertEqual(<<"agent@localhost/r">>, proplists:get_value(2, fields(Ev))),
              {{message, 1, {cluster, Up}}, Srv2} = next(Srv1, is(message)),
              ?assertEqual([{1, <<"n2@host">>}, {2, 1}], fields(Up)),
              {{message, 1, {cluster, Down}}, _} = next(Srv2, is(message)),
              ?assertEqual([{1, <<"n2@host">>}], fields(Down))
      end, [SA, SB]).

%% After a GOAWAY the old connection still delivers what it owes, but a
%% watch list on it claims nothing: its sidecar is on its way out.
a_draining_connection_owns_nothing([{A, LA}, {B, LB}]) ->
    start_named(A, LA),
    start_named(B, LB),
    Old = accept(LA),
    SB = accept(LB),
    out(SB, watch_frame([?S1, ?S2], [], <<"b">>)), %% B owns nothing (and said so)
    out(Old, watch_frame([?S1], [?S1], <<"a">>)),
    wait(fun() -> owned(A) =:= 1 end),
    out(Old, consult_h2:goaway(1, no_error, <<>>)),
    New = accept(LA),
    wait(fun() -> owned(A) =:= 0 end),
    out(Old, watch_frame([?S1], [?S1], <<"a">>)),
    out(New, watch_frame([?S1, ?S2], [?S2], <<"a2">>)),
    wait(fun() -> maps:get(sidecar_id, consult_grpc:status(A)) =:= <<"a2">> end),
    ?assertEqual({error, no_owner}, consult_grpc:filter(<<"localhost">>, ?S1, ?STANZA, 5000)),
    _ = answered(?S2, New).

owned(Name) -> maps:get(owned, consult_grpc:status(Name)).

%% A stanza for Target reaches the server Srv, and its verdict the caller.
answered(Target, Srv) ->
    Self = self(),
    Caller = spawn(fun() -> Self ! {self(), consult_grpc:filter(<<"localhost">>, Target, ?STANZA, 5000)} end),
    {{message, 1, {filter, Seq, ?STANZA}}, Srv1} = next(Srv, is(message)),
    verdict(Srv1, Seq),
    ?assertMatch({ok, #{seq := Seq}}, await(Caller)),
    Srv1.

