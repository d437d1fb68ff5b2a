%% A connection's circuit breaker, pure: Threshold timeouts in a row open
%% it; open, requests fail fast for Cooldown ms; then exactly one request
%% (the probe) may test the sidecar: its verdict closes the breaker, its
%% timeout opens it for another cooldown. Times are monotonic ms, given by
%% the caller.
%%
%% consult_grpc_conn keeps one per connection and publishes published/1 in
%% the connection's ETS table; callers read it with conn_state/2 so they
%% fail fast without messaging the connection.
-module(consult_breaker).

-export([new/2, gate/2, probing/2, failure/3, success/1, lost/2, state/1, failures/1,
         published/1, conn_state/2, status/2]).
-export_type([breaker/0, published/0]).

-record(breaker, {
    threshold :: pos_integer(),
    cooldown :: non_neg_integer(),
    failures = 0 :: non_neg_integer(),  %% consecutive timeouts
    state = closed :: closed | {open, Until :: integer()},
    probe = undefined :: undefined | term()  %% the request testing the sidecar
}).
-opaque breaker() :: #breaker{}.
%% What callers see: probing while the probe is out.
-type published() :: closed | {open, integer()} | probing.

-spec new(pos_integer(), non_neg_integer()) -> breaker().
new(Threshold, Cooldown) -> #breaker{threshold = Threshold, cooldown = Cooldown}.

%% Whether a request may go: closed; open (fail fast); or probe, the one
%% request that tests the sidecar once the cooldown is over (mark it with
%% probing/2).
-spec gate(breaker(), integer()) -> closed | probe | open.
gate(#breaker{state = closed}, _Now) -> closed;
gate(#breaker{state = {open, Until}, probe = undefined}, Now) when Now >= Until -> probe;
gate(#breaker{}, _Now) -> open.

-spec probing(term(), breaker()) -> breaker().
probing(Req, B) -> B#breaker{probe = Req}.

%% Req timed out.
-spec failure(term(), integer(), breaker()) -> breaker().
failure(Req, Now, B = #breaker{failures = F, state = State, threshold = T, cooldown = C, probe = Probe}) ->
    case State of
        closed when F + 1 >= T ->
            B#breaker{failures = F + 1, state = {open, Now + C}};
        {open, _} when Req =:= Probe ->
            %% The probe failed: another cooldown.
            B#breaker{failures = F + 1, state = {open, Now + C}, probe = undefined};
        _ ->
            B#breaker{failures = F + 1}
    end.

%% A verdict came: the sidecar answers.
-spec success(breaker()) -> breaker().
success(B = #breaker{state = closed}) -> B#breaker{failures = 0};
success(B) -> B#breaker{failures = 0, state = closed, probe = undefined}.

%% These requests will never be answered (their connection went): a probe
%% among them no longer blocks the next one.
-spec lost([term()], breaker()) -> breaker().
lost(Reqs, B = #breaker{probe = Probe}) ->
    case lists:member(Probe, Reqs) of
        true -> B#breaker{probe = undefined};
        false -> B
    end.

-spec state(breaker()) -> closed | {open, integer()}.
state(#breaker{state = State}) -> State.

%% Timeouts in a row.
-spec failures(breaker()) -> non_neg_integer().
failures(#breaker{failures = F}) -> F.

-spec published(breaker()) -> published().
published(#breaker{state = {open, _}, probe = Probe}) when Probe =/= undefined -> probing;
published(#breaker{state = State}) -> State.

%% What a connected connection's published breaker means for a caller now.
-spec conn_state(published(), integer()) -> closed | probe | open.
conn_state(closed, _Now) -> closed;
conn_state({open, Until}, Now) when Now >= Until -> probe;
conn_state(_, _Now) -> open.

-spec status(breaker(), integer()) ->
          #{breaker := closed | open | half_open, probe_in_flight := boolean(),
            consecutive_timeouts := non_neg_integer()}.
status(#breaker{state = State, probe = Probe, failures = F}, Now) ->
    Breaker = case State of
                  closed -> closed;
                  {open, Until} when Now >= Until -> half_open;
                  {open, _} -> open
              end,
    #{breaker => Breaker, probe_in_flight => Probe =/= undefined, consecutive_timeouts => F}.
