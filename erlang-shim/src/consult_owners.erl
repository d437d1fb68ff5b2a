%% Which sidecar connection a stanza goes to, as pure functions over plain
%% data (consult_sidecar keeps the data in each connection's ETS table,
%% consult_grpc reads it per stanza; tests call these directly).
%%
%% Each shop is decided by one sidecar at a time, the one that lists it in
%% WatchList.owned. A connection keeps its sidecar's claims as
%% #{Shop => Since}, Since being when it started claiming the shop (a
%% node-wide monotonic integer), and forgets them all when it goes down.
-module(consult_owners).

-export([claim/3, owner/1, any_up/1]).
-export_type([claims/0, conn_state/0]).

-type claims() :: #{binary() => integer()}.
%% closed: connected, breaker closed; probe: connected, the open breaker's
%% cooldown is over (one request may test it); open: connected, failing
%% fast; down: not connected.
-type conn_state() :: closed | probe | open | down.

%% A connection's new owned list (sent in full) against its current claims:
%% the claims after it, those it adds (with Since) and the shops it dropped.
%% A shop still owned keeps its Since.
-spec claim(claims(), [binary()], integer()) -> {claims(), [{binary(), integer()}], [binary()]}.
claim(Claims, Owned, Since) ->
    New = maps:from_list([{Shop, maps:get(Shop, Claims, Since)} || Shop <- Owned]),
    Added = [{Shop, Since} || Shop <- lists:usort(Owned), not maps:is_key(Shop, Claims)],
    Removed = [Shop || Shop <- lists:sort(maps:keys(Claims)), not maps:is_key(Shop, New)],
    {New, Added, Removed}.

%% The connection that decides a shop, from the claims on it of the
%% connections that are up: [{Since, Conn}]. During a handover the old
%% owner's last list may still name the shop when the new owner's arrives:
%% the newest claim wins (a wrong guess is refused by the sidecar, which
%% decides only the shops it holds).
-spec owner([{integer(), Conn}]) -> {ok, Conn} | none.
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
