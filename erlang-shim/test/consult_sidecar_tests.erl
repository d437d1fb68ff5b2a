%% EUnit tests for consult_sidecar: what the shim does with what the sidecar
%% says (watch lists, owned shops, Injects) and the table rows callers read.
%% SidecarMessages are written here with consult_fake_sidecar's wire helpers.
-module(consult_sidecar_tests).

-include_lib("eunit/include/eunit.hrl").

-export([on_watch/2, on_inject/1, on_erase/2]).

-import(consult_fake_sidecar, [field/2, varint_field/2]).

-define(TAB, consult_sidecar_test).
-define(WATCHER, consult_sidecar_test_watcher).

%%% Fixture: a table as the connection makes it, and a watch file.

sidecar_test_() ->
    {foreach,
     fun() ->
             logger:set_primary_config(level, none),
             ets:new(?TAB, [named_table, public, set]),
             File = filename:join("/tmp", "consult_sidecar_tests_" ++ os:getpid() ++ ".term"),
             _ = file:delete(File),
             File
     end,
     fun(File) ->
             ets:delete(?TAB),
             _ = file:delete(File),
             logger:set_primary_config(level, notice)
     end,
     [fun(File) -> {atom_to_list(element(2, erlang:fun_info(Case, name))), fun() -> watched_by_me(fun() -> Case(File) end) end} end
      || Case <- [fun watch_list_replaces_the_last/1, fun watch_file_survives_a_restart/1,
                  fun owned_shops_are_claimed/1, fun draining_claims_nothing/1,
                  fun agents_reported_once_per_connection/1, fun report_presence_reports_all_again/1,
                  fun verdicts_go_back/1,
                  fun inject_is_acked_once_routed/1, fun erase_is_answered/1, fun unknown_messages_ignored/1]]}.

%% The callbacks tell the test process (setup runs in another).
watched_by_me(Fun) ->
    register(?WATCHER, self()),
    try Fun() after unregister(?WATCHER) end.

on_watch(Name, Agents) -> ?WATCHER ! {watch, Name, Agents}.

on_inject(Stanzas) -> ?WATCHER ! {inject, Stanzas}, ok.

on_erase(<<"crash@x">>, _Account) -> error(boom);
on_erase(Jid, Account) ->
    ?WATCHER ! {erase, Jid, Account},
    #{offline => true, mam => false, account => Account, node => <<"n@h">>}.

new(File) ->
    consult_sidecar:new(?TAB, <<"127.0.0.1:1">>, #{on_watch => {?MODULE, on_watch}, on_inject => {?MODULE, on_inject},
                                                  on_erase => {?MODULE, on_erase}, watch_file => File}).

watch(Shops, Agents, Owned, Id) ->
    iolist_to_binary(field(2, [[field(1, S) || S <- Shops], [field(2, A) || A <- Agents],
                               [field(3, S) || S <- Owned], field(4, Id)])).

message(Bin, S) -> message(Bin, current, S).

message(Bin, Role, S) ->
    {ok, S1} = consult_sidecar:message(Bin, Role, make_ref(), S),
    S1.

received() ->
    receive M -> M after 2000 -> nothing end.

%%% Cases

watch_list_replaces_the_last(File) ->
    S = message(watch([<<"s1">>, <<"s2">>], [<<"a1">>], [], <<>>), new(File)),
    ?assert(consult_sidecar:watched(?TAB, shop, <<"s1">>)),
    ?assert(consult_sidecar:watched(?TAB, agent, <<"a1">>)),
    ?assertNot(consult_sidecar:watched(?TAB, agent, <<"s1">>)),
    _ = message(watch([<<"s2">>], [], [], <<>>), S),
    ?assertNot(consult_sidecar:watched(?TAB, shop, <<"s1">>)),
    ?assert(consult_sidecar:watched(?TAB, shop, <<"s2">>)),
    ?assertNot(consult_sidecar:watched(?TAB, agent, <<"a1">>)),
    ?assertNot(consult_sidecar:watched(no_such_table, shop, <<"s2">>)).

%% The last list (not what the sidecar owned) is kept on disk.
watch_file_survives_a_restart(File) ->
    _ = message(watch([<<"s1">>], [<<"a1">>], [<<"s1">>], <<"x">>), new(File)),
    ets:delete_all_objects(?TAB),
    S = new(File),
    ?assert(consult_sidecar:watched(?TAB, shop, <<"s1">>)),
    ?assert(consult_sidecar:watched(?TAB, agent, <<"a1">>)),
    ?assertEqual([], consult_sidecar:claim(?TAB, <<"s1">>)),
    ?assertEqual(#{sidecar_id => <<>>, owned => 0}, consult_sidecar:status(S)),
    %% A file that is not a watch list is no watch list.
    ok = file:write_file(File, <<"garbage">>),
    ets:delete_all_objects(?TAB),
    _ = new(File),
    ?assertEqual([], ets:tab2list(?TAB)).

owned_shops_are_claimed(File) ->
    ?assertNot(consult_sidecar:told(?TAB)),
    S = message(watch([<<"s1">>, <<"s2">>], [], [<<"s1">>], <<"a">>), new(File)),
    ?assert(consult_sidecar:told(?TAB)),
    [Since] = consult_sidecar:claim(?TAB, <<"s1">>),
    ?assertEqual([], consult_sidecar:claim(?TAB, <<"s2">>)),
    ?assertEqual(#{sidecar_id => <<"a">>, owned => 1}, consult_sidecar:status(S)),
    %% A shop still owned keeps its claim; one dropped is gone.
    S1 = message(watch([<<"s1">>, <<"s2">>], [], [<<"s1">>, <<"s2">>], <<"a">>), S),
    ?assertEqual([Since], consult_sidecar:claim(?TAB, <<"s1">>)),
    S2 = message(watch([<<"s1">>, <<"s2">>], [], [<<"s2">>], <<"a">>), S1),
    ?assertEqual([], consult_sidecar:claim(?TAB, <<"s1">>)),
    %% Disconnected: nothing is owned or told, the watch list stays.
    S3 = consult_sidecar:disconnected(S2),
    ?assertEqual([], consult_sidecar:claim(?TAB, <<"s2">>)),
    ?assertNot(consult_sidecar:told(?TAB)),
    ?assert(consult_sidecar:watched(?TAB, shop, <<"s2">>)),
    ?assertMatch(#{owned := 0}, consult_sidecar:status(S3)).

draining_claims_nothing(File) ->
    S = message(watch([<<"s1">>], [<<"a1">>], [<<"s1">>], <<"a">>), draining, new(File)),
    ?assert(consult_sidecar:watched(?TAB, shop, <<"s1">>)),
    ?assertEqual([], consult_sidecar:claim(?TAB, <<"s1">>)),
    ?assertMatch(#{owned := 0}, consult_sidecar:status(S)),
    ?assertEqual(nothing, receive M -> M after 100 -> nothing end).

%% on_watch hears of each agent once per connection.
agents_reported_once_per_connection(File) ->
    S = message(watch([], [<<"a1">>, <<"a2">>], [], <<>>), new(File)),
    ?assertEqual({watch, ?TAB, [<<"a1">>, <<"a2">>]}, received()),
    S1 = message(watch([], [<<"a2">>, <<"a3">>], [], <<>>), S),
    ?assertEqual({watch, ?TAB, [<<"a3">>]}, received()),
    _ = message(watch([], [<<"a2">>, <<"a3">>], [], <<>>), consult_sidecar:connected(S1)),
    ?assertEqual({watch, ?TAB, [<<"a2">>, <<"a3">>]}, received()).

%% ReportPresence (SidecarMessage field 4, empty) reports every agent of the
%% connection's watch list again; a draining connection's sidecar is not asked
%% for, and before any watch list there is nobody to report.
report_presence_reports_all_again(File) ->
    ReportPresence = iolist_to_binary(field(4, <<>>)),
    S0 = new(File),
    ?assertEqual({ok, S0}, consult_sidecar:message(ReportPresence, current, make_ref(), S0)),
    ?assertEqual(nothing, receive M0 -> M0 after 100 -> nothing end),
    S = message(watch([], [<<"a1">>, <<"a2">>], [], <<>>), S0),
    ?assertEqual({watch, ?TAB, [<<"a1">>, <<"a2">>]}, received()),
    ?assertEqual({ok, S}, consult_sidecar:message(ReportPresence, current, make_ref(), S)),
    ?assertEqual({watch, ?TAB, [<<"a1">>, <<"a2">>]}, received()),
    ?assertEqual({ok, S}, consult_sidecar:message(ReportPresence, draining, make_ref(), S)),
    ?assertEqual(nothing, receive M1 -> M1 after 100 -> nothing end),
    %% The next watch list reports only what it adds, as before.
    _ = message(watch([], [<<"a1">>, <<"a2">>, <<"a3">>], [], <<>>), S),
    ?assertEqual({watch, ?TAB, [<<"a3">>]}, received()).

verdicts_go_back(File) ->
    S = new(File),
    Verdict = iolist_to_binary([field(3, <<"<m/>">>), varint_field(1, 7), field(5, <<"<a/>">>)]),
    ?assertEqual({verdict, 7, Verdict, S},
                 consult_sidecar:message(iolist_to_binary(field(1, Verdict)), current, make_ref(), S)).

%% The ack comes to the connection (this process) once on_inject returned;
%% id 0 wants none.
inject_is_acked_once_routed(File) ->
    S = new(File),
    Ref = make_ref(),
    Inject = fun(Id) -> iolist_to_binary(field(3, [field(1, <<"<m1/>">>), field(1, <<"<m2/>">>),
                                                   varint_field(2, Id)])) end,
    {ok, S} = consult_sidecar:message(Inject(5), current, Ref, S),
    ?assertEqual({inject, [<<"<m1/>">>, <<"<m2/>">>]}, received()),
    ?assertEqual({'$gen_cast', {inject_ack, Ref, 5}}, received()),
    {ok, S} = consult_sidecar:message(Inject(0), current, Ref, S),
    ?assertEqual({inject, [<<"<m1/>">>, <<"<m2/>">>]}, received()),
    ?assertEqual(nothing, receive M -> M after 100 -> nothing end).

%% EraseUser runs on_erase apart; its answer (or its crash, as an error) comes
%% back to the connection with the request's id. Without on_erase: an error.
erase_is_answered(File) ->
    S = new(File),
    Ref = make_ref(),
    Erase = fun(Id, Jid) -> iolist_to_binary(field(5, [varint_field(1, Id), field(2, Jid), varint_field(3, 1)])) end,
    {ok, S} = consult_sidecar:message(Erase(9, <<"v@x">>), current, Ref, S),
    ?assertEqual({erase, <<"v@x">>, true}, received()),
    ?assertEqual({'$gen_cast', {erase_user_ack, Ref, #{id => 9, offline => true, mam => false, account => true,
                                                       node => <<"n@h">>}}}, received()),
    {ok, S} = consult_sidecar:message(Erase(10, <<"crash@x">>), current, Ref, S),
    ?assertMatch({'$gen_cast', {erase_user_ack, Ref, #{id := 10, offline := false, mam := false, account := false,
                                                       error := <<"boom">>}}}, received()),
    Bare = consult_sidecar:new(?TAB, <<"127.0.0.1:1">>, #{}),
    {ok, Bare} = consult_sidecar:message(Erase(11, <<"v@x">>), current, Ref, Bare),
    ?assertMatch({'$gen_cast', {erase_user_ack, Ref, #{id := 11, error := <<"this shim erases nothing">>}}}, received()).

unknown_messages_ignored(File) ->
    S = new(File),
    ?assertEqual({ok, S}, consult_sidecar:message(<<>>, current, make_ref(), S)),
    ?assertEqual({ok, S}, consult_sidecar:message(iolist_to_binary(field(9, <<"x">>)), current, make_ref(), S)).

%%% What the shim says

encoders_test_() ->
    [?_assertEqual(iolist_to_binary(consult_pb:encode_shim_message({inject_ack, #{id => 3}})),
                   iolist_to_binary(consult_sidecar:inject_ack(3))),
     ?_assertEqual(iolist_to_binary(consult_pb:encode_shim_message(
                                      {erase_user_ack, #{id => 4, offline => true, mam => true, account => false}})),
                   iolist_to_binary(consult_sidecar:erase_user_ack(#{id => 4, offline => true, mam => true, account => false}))),
     ?_assertEqual(iolist_to_binary(consult_pb:encode_shim_message({cluster, #{node => <<"n@h">>, up => true}})),
                   iolist_to_binary(consult_sidecar:cluster_event('n@h', true))),
     %% This node first (the test node is not distributed: nobody else); it reads structured verdicts.
     ?_assertEqual(iolist_to_binary(consult_pb:encode_shim_message(
                                      {hello, #{node => <<"me@h">>, hosts => [<<"x">>], shim_version => <<"v">>,
                                                cluster_nodes => [<<"me@h">>],
                                                features => [<<"structured-verdict">>]}})),
                   iolist_to_binary(consult_sidecar:hello(<<"me@h">>, [<<"x">>], <<"v">>)))].
