%% Which sidecar connection a stanza goes to, as pure functions over plain
%% data (consult_sidecar keeps the data in each connection's ETS table,
%% consult_grpc reads it per stanza; tests call these directly).
%%
%% Each shop is decided by one sidecar at a time, the one that lists it in
%% WatchList.owned. A connection keeps its sidecar's claims as
%% #{Shop => {Epoch, Since}}: Epoch is the shop's lease epoch as the sidecar
%% said (it grows each time the lease changes holder; 0 from a store without
%% leases), Since when this connection started claiming the shop at that
%% epoch (a node-wide monotonic integer). It forgets them all when it goes down.
-module(consult_owners).

-export([claim/3, owner/1, any_up/1]).
-export_type([claims/0, claim/0, conn_state/0]).

-type claim() :: {Epoch :: non_neg_integer(), Since :: integer()}.
-type claims() :: #{binary() => claim()}.
%% closed: connected, breaker closed; probe: connected, the open breaker's
%% cooldown is over (one request may test it); open: connected, failing
%% fast; down: not connected.
-type conn_state() :: closed | probe | open | down.

%% A connection's new owned list (sent in full; each shop alone or with its
%% epoch) against its current claims: the claims after it, those it adds or
%% changes (with their claim) and the shops it dropped. A shop still owned at
%% the same epoch keeps its Since.
-spec claim(claims(), [binary() | {binary(), non_neg_integer()}], integer()) ->
          {claims(), [{binary(), claim()}], [binary()]}.
claim(Claims, Owned, Since) ->
    New = maps:from_list([claim_of(Shop, Epoch, Claims, Since) || {Shop, Epoch} <- lists:map(fun with_epoch/1, Owned)]),
    Added = lists:sort([{Shop, C} || {Shop, C} <- maps:to_list(New), maps:get(Shop, Claims, none) =/= C]),
    Removed = [Shop || Shop <- lists:sort(maps:keys(Claims)), not maps:is_key(Shop, New)],
    {New, Added, Removed}.

with_epoch({Shop, Epoch}) -> {Shop, Epoch};
with_epoch(Shop) -> {Shop, 0}.

claim_of(Shop, Epoch, Claims, Since) ->
    case Claims of
        #{Shop := {Epoch, _} = Kept} -> {Shop, Kept};
        _ -> {Shop, {Epoch, Since}}
    end.

%% The connection that decides a shop, from the claims on it of the
%% connections that are up: [{Claim, Conn}]. During a hand-over the old
%% owner's last list may still name the shop when the new owner's arrives,
%% and a sidecar that was paused may wake up still listing shops it lost:
%% the higher lease epoch wins, and at equal epochs (no leases) the newest
%% claim. A wrong guess is refused by the sidecar, which decides only the
%% shops it holds.
-spec owner([{claim(), Conn}]) -> {ok, Conn} | none.
owner([]) -> none;
owner(Claims) ->
    {_, Conn} = lists:max(Claims),
    {ok, Conn}.

%% Any connection, for a stanza not addressed to a shop: the first (in the
%% configured order) whose breaker is closed, else the first that may probe.
-spec any_up([{Conn, conn_state()}]) -> {ok, Conn} | {error, circuit_open | unavailable}.
any_up(Conns) ->
    case [C || {C, closed} <- Conns] ++ [C || {C, probe} <- Conns] of
        [Conn | _] -> {ok, Conn};
        [] ->
            case lists:keymember(open, 2, Conns) of
                true -> {error, circuit_open};
                false -> {error, unavailable}
            end
    end.
