%% EUnit tests for consult_inject_keys: the shim's memory of the kept messages
%% it routed (a resend is acknowledged but not routed again), its bound and
%% expiry, and bounced messages held back; and consult_sidecar using it.
-module(consult_inject_keys_tests).

-include_lib("eunit/include/eunit.hrl").

-export([on_inject/1]).

-import(consult_fake_sidecar, [field/2, varint_field/2]).

-define(TAB, consult_inject_keys_test).
-define(ME, consult_inject_keys_test_watcher).

key(At, BodyId) -> <<"shop@x\nv@x\n", (integer_to_binary(At))/binary, "\n", BodyId/binary, "\nd">>.

with_table(Tab, Fun) ->
    consult_inject_keys:new_table(Tab),
    try Fun() after ets:delete(Tab) end.

repeat_key_not_routed_test() ->
    with_table(?TAB, fun() ->
        K1 = key(1, <<"a">>), K2 = key(2, <<"b">>), K3 = key(3, <<"c">>),
        ?assertEqual([<<"m1">>, <<"m2">>], consult_inject_keys:claim(?TAB, [K1, K2], [<<"m1">>, <<"m2">>], #{})),
        %% The batch again, cut differently after a restart: only the new one goes.
        ?assertEqual([<<"m3">>], consult_inject_keys:claim(?TAB, [K2, K3], [<<"m2">>, <<"m3">>], #{})),
        ?assertEqual([], consult_inject_keys:claim(?TAB, [K1, K2, K3], [<<"m1">>, <<"m2">>, <<"m3">>], #{})),
        %% No keys (notices, bot answers): always routed.
        ?assertEqual([<<"n">>, <<"n">>], consult_inject_keys:claim(?TAB, [], [<<"n">>, <<"n">>], #{}))
    end).

without_table_everything_is_routed_test() ->
    ?assertEqual([<<"m1">>], consult_inject_keys:claim(no_such_table, [key(1, <<"a">>)], [<<"m1">>], #{})).

keys_expire_test() ->
    with_table(?TAB, fun() ->
        K = key(1, <<"a">>),
        ?assertEqual([<<"m">>], consult_inject_keys:claim(?TAB, [K], [<<"m">>], #{routed_ttl => 50})),
        ?assertEqual([], consult_inject_keys:claim(?TAB, [K], [<<"m">>], #{routed_ttl => 50})),
        timer:sleep(80),
        ?assertEqual([<<"m">>], consult_inject_keys:claim(?TAB, [K], [<<"m">>], #{routed_ttl => 50})),
        %% The sweep drops what expired.
        timer:sleep(80),
        consult_inject_keys:sweep(?TAB, erlang:system_time(millisecond), 100),
        ?assertEqual(0, ets:info(?TAB, size))
    end).

bounded_in_count_oldest_first_test() ->
    with_table(?TAB, fun() ->
        Keys = [key(I, integer_to_binary(I)) || I <- lists:seq(1, 30)],
        lists:foreach(fun(K) -> consult_inject_keys:claim(?TAB, [K], [<<"m">>], #{max => 10}), timer:sleep(2) end, Keys),
        ?assert(ets:info(?TAB, size) =< 10),
        %% The newest are remembered, the oldest forgotten.
        ?assertEqual([], consult_inject_keys:claim(?TAB, [lists:last(Keys)], [<<"m">>], #{max => 10})),
        ?assertEqual([<<"m">>], consult_inject_keys:claim(?TAB, [hd(Keys)], [<<"m">>], #{max => 10}))
    end).

bounced_message_not_routed_test() ->
    with_table(?TAB, fun() ->
        Before = erlang:system_time(millisecond) - 10,
        ok = consult_inject_keys:bounced(?TAB, <<"shop@x">>, <<"v@x">>, <<"b1">>, #{}),
        After = erlang:system_time(millisecond) + 10,
        %% Kept before the bounce: the visitor was told it failed, the agent never gets it.
        ?assertEqual([], consult_inject_keys:claim(?TAB, [key(Before, <<"b1">>)], [<<"m">>], #{})),
        %% The visitor's resend with the same body id, kept later, does reach the agent.
        ?assertEqual([<<"r">>], consult_inject_keys:claim(?TAB, [key(After, <<"b1">>)], [<<"r">>], #{})),
        ?assertEqual([<<"o">>], consult_inject_keys:claim(?TAB, [key(Before, <<"b2">>)], [<<"o">>], #{}))
    end).

%%% Through consult_sidecar: a repeated key is acknowledged, not routed.

on_inject(Stanzas) -> ?ME ! {inject, Stanzas}, ok.

sidecar_acks_a_repeat_without_routing_it_test() ->
    register(?ME, self()),
    ets:new(consult_inject_keys_sidecar_test, [named_table, public, set]),
    try
        with_table(consult_inject_keys, fun() ->
            S = consult_sidecar:new(consult_inject_keys_sidecar_test, <<"127.0.0.1:1">>,
                                    #{on_inject => {?MODULE, on_inject}}),
            Ref = make_ref(),
            Inject = fun(Id, Pairs) ->
                             iolist_to_binary(field(3, [[field(1, M) || {M, _} <- Pairs], varint_field(2, Id),
                                                        [field(3, K) || {_, K} <- Pairs]]))
                     end,
            K1 = key(1, <<"a">>), K2 = key(2, <<"b">>),
            {ok, S} = consult_sidecar:message(Inject(5, [{<<"<m1/>">>, K1}]), current, Ref, S),
            ?assertEqual({inject, [<<"<m1/>">>]}, received()),
            ?assertEqual({'$gen_cast', {inject_ack, Ref, 5}}, received()),
            %% Sent again by the next sidecar, with one more: only the new one is routed.
            {ok, S} = consult_sidecar:message(Inject(1, [{<<"<m1/>">>, K1}, {<<"<m2/>">>, K2}]), current, Ref, S),
            ?assertEqual({inject, [<<"<m2/>">>]}, received()),
            ?assertEqual({'$gen_cast', {inject_ack, Ref, 1}}, received()),
            %% All seen: nothing routed, still acknowledged.
            {ok, S} = consult_sidecar:message(Inject(2, [{<<"<m1/>">>, K1}, {<<"<m2/>">>, K2}]), current, Ref, S),
            ?assertEqual({'$gen_cast', {inject_ack, Ref, 2}}, received()),
            ?assertEqual(nothing, receive M -> M after 100 -> nothing end)
        end)
    after
        ets:delete(consult_inject_keys_sidecar_test),
        unregister(?ME)
    end.

received() ->
    receive M -> M after 2000 -> nothing end.
