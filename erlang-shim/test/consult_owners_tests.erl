%% EUnit and PropEr tests for consult_owners, the rules that pick the
%% sidecar connection of a stanza. consult_grpc_tests runs the same rules
%% through two live connections; test/e2e/shim-grpc-client.test.ts against grpc-js.
-module(consult_owners_tests).

-include_lib("eunit/include/eunit.hrl").

-export([prop_one_owner/0]).

claim_test() ->
    {C1, Added1, Removed1} = consult_owners:claim(#{}, [<<"b">>, <<"a">>, <<"a">>], 10),
    ?assertEqual(#{<<"a">> => {0, 10}, <<"b">> => {0, 10}}, C1),
    ?assertEqual([{<<"a">>, {0, 10}}, {<<"b">>, {0, 10}}], Added1),
    ?assertEqual([], Removed1),
    %% a still owned keeps its time; b dropped; c added now.
    {C2, Added2, Removed2} = consult_owners:claim(C1, [<<"c">>, <<"a">>], 20),
    ?assertEqual(#{<<"a">> => {0, 10}, <<"c">> => {0, 20}}, C2),
    ?assertEqual([{<<"c">>, {0, 20}}], Added2),
    ?assertEqual([<<"b">>], Removed2),
    ?assertEqual({#{}, [], [<<"a">>, <<"c">>]}, consult_owners:claim(C2, [], 30)).

claim_with_epochs_test() ->
    {C1, _, _} = consult_owners:claim(#{}, [{<<"a">>, 3}, {<<"b">>, 1}], 10),
    %% The same epoch keeps its time; a new epoch (the lease was lost and taken again) is a new claim.
    {C2, Added, []} = consult_owners:claim(C1, [{<<"a">>, 3}, {<<"b">>, 2}], 20),
    ?assertEqual(#{<<"a">> => {3, 10}, <<"b">> => {2, 20}}, C2),
    ?assertEqual([{<<"b">>, {2, 20}}], Added).

owner_test() ->
    ?assertEqual(none, consult_owners:owner([])),
    ?assertEqual({ok, b}, consult_owners:owner([{{0, 10}, a}, {{0, 20}, b}])),
    ?assertEqual({ok, a}, consult_owners:owner([{{0, 30}, a}, {{0, 20}, b}])),
    %% A stale sidecar that woke up and listed the shop last still has the older lease.
    ?assertEqual({ok, b}, consult_owners:owner([{{4, 99}, a}, {{5, 20}, b}])).

any_up_test() ->
    ?assertEqual({ok, b}, consult_owners:any_up([{a, down}, {b, closed}, {c, closed}])),
    %% A closed breaker before one that may probe, whatever the order.
    ?assertEqual({ok, c}, consult_owners:any_up([{a, probe}, {b, open}, {c, closed}])),
    ?assertEqual({ok, a}, consult_owners:any_up([{a, probe}, {b, open}])),
    ?assertEqual({error, circuit_open}, consult_owners:any_up([{a, down}, {b, open}])),
    ?assertEqual({error, unavailable}, consult_owners:any_up([{a, down}])),
    ?assertEqual({error, unavailable}, consult_owners:any_up([])).

%%% A model: connections that come up with watch lists and go down

proper_test_() ->
    consult_properties:tests(?MODULE, [prop_one_owner], 500, 60).

-define(CONNS, [a, b, c]).
-define(SHOPS, [<<"s1">>, <<"s2">>, <<"s3">>, <<"s4">>]).

%% After every event, for every shop: the owner is a connection that is up
%% and lists the shop now; there is one whenever such a connection exists; a
%% connection that starts listing a shop takes it; one that goes down
%% decides nothing; and a list that does not newly claim a shop leaves it
%% with its owner.
prop_one_owner() ->
    Event = proper_types:union([{watch, proper_types:elements(?CONNS),
                                 proper_types:list(proper_types:elements(?SHOPS))},
                                {down, proper_types:elements(?CONNS)}]),
    proper:forall(proper_types:list(Event),
                  fun(Events) -> run(Events, #{}, 1) end).

%% Conns: #{Conn => {Listed, Claims}} for the connections that are up.
run([], _Conns, _Now) ->
    true;
run([Event | Rest], Conns, Now) ->
    Conns1 = case Event of
                 {watch, C, Owned} ->
                     {_, Claims} = maps:get(C, Conns, {[], #{}}),
                     {Claims1, _, _} = consult_owners:claim(Claims, Owned, Now),
                     Conns#{C => {Owned, Claims1}};
                 {down, C} ->
                     maps:remove(C, Conns)
             end,
    lists:all(fun(Shop) -> check(Event, Shop, Conns, Conns1) end, ?SHOPS)
        andalso run(Rest, Conns1, Now + 1).

check(Event, Shop, Before, After) ->
    Owner = owner(Shop, After),
    Listing = [C || {C, {Listed, _}} <- maps:to_list(After), lists:member(Shop, Listed)],
    Valid = case Owner of
                none -> Listing =:= [];
                {ok, O} -> lists:member(O, Listing)
            end,
    Valid andalso
        case Event of
            {down, C} ->
                Owner =/= {ok, C};
            {watch, C, Owned} ->
                {_, OldClaims} = maps:get(C, Before, {[], #{}}),
                case lists:member(Shop, Owned) andalso not maps:is_key(Shop, OldClaims) of
                    true -> Owner =:= {ok, C};  %% newly claimed
                    false ->
                        case owner(Shop, Before) of
                            {ok, D} when D =/= C -> Owner =:= {ok, D};
                            _ -> true
                        end
                end
        end.

owner(Shop, Conns) ->
    consult_owners:owner([{Since, C} || {C, {_, #{Shop := Since}}} <- maps:to_list(Conns)]).
